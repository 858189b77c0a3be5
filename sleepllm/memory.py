"""A memory: the facts one model was told, living in its weights, for one memory folder.

    note(fact)    wake: the fact goes into the fsync'd journal and the queue of facts to
                  learn — from here it is acknowledged and survives a crash
    learn_next()  write the oldest noted fact: supersede an older fact with the same key,
                  write the edit, save its factors, journal it as learned (the REPL runs this
                  in the background while the user types; see repl.Learner)
    learn(fact)   note + learn_next, for callers that wait
    forget(id)    revert the edit exactly and remove the fact from every file
    checkpoint()  consolidate: all active edits + the ledger into a new checkpoint, retire
                  the journal (see store.py for the layout)

On start the latest valid checkpoint is loaded, then the journal is replayed on top of it;
facts noted but not yet learned (a quit or crash mid-edit) are queued again.
"""
import threading
from datetime import datetime, timezone
from pathlib import Path

from sleepllm import memit, probes, relations, stats, store
from sleepllm.config import cache_dir, private_dir
from sleepllm.editor import Edit, Editor
from sleepllm.model import fingerprint
from sleepllm.relations import Fact


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def wordings_record(of: int, missed: list, time: str | None = None) -> dict:
    """The ledger's note of a memory's wordings: when they were asked (now by default), how
    many, and the ones missed (probes.missed) — what a rehearsal trains."""
    return {"time": time or _now(), "of": of, "missed": missed}


class Memory:
    def __init__(self, folder: Path, model, tokenizer, cfg: dict, model_id: str, console=None):
        self.folder = private_dir(Path(folder))
        private_dir(self.folder / "edits")
        self.cfg, self.model_id, self.console = cfg, model_id, console
        self.fingerprint = fingerprint(model)
        hp = memit.Hparams.from_config(cfg["editor"])

        def load_stats(parts):
            got = stats.load(model, tokenizer, hp.layers, cache_dir(), self.fingerprint,
                             cfg["editor"]["cov_tokens_per_dk"], console, parts)
            if "prefixes" in got:
                got["prefixes"] = got["prefixes"][: cfg["editor"]["prefixes"]]
            return got

        self.editor = Editor(model, tokenizer, hp, load_stats, cfg["system_prompt"])
        self.records: dict[str, dict] = {}   # the ledger, in learning order
        self.queue: list[dict] = []          # noted, not yet learned: journal "note" entries
        self.checkpoint_name = None
        self.warnings: list[str] = []
        # the journal is appended to by note (the REPL's main thread) and learn_next (its
        # Learner's thread) at once, and rewritten by either: one at a time
        self._journal_lock = threading.RLock()
        self._load()

    # ------------------------------------------------------------------ views
    @property
    def journal(self) -> Path:
        return self.folder / "journal.jsonl"

    def active(self) -> dict[str, Fact]:
        return {i: Fact.from_dict(r["fact"]) for i, r in self.records.items()}

    def counts(self) -> dict:
        c = {"noted": len(self.queue), "pending": 0, "consolidated": 0, "degraded": 0}
        for r in list(self.records.values()):   # list(): the learner thread may add one
            if r["status"] == "pending":
                c["pending"] += 1
            else:
                c["consolidated"] += 1
            if (r.get("last_audit") or {}).get("status") in ("degraded", "lost"):
                c["degraded"] += 1
        return c

    def find(self, words: str) -> list[str]:
        """Ids matching an id or words in the fact's text."""
        if words in self.records or words in [e["id"] for e in self.queue]:
            return [words]
        w = words.lower().split()
        return [r["id"] for r in list(self.records.values()) + self.queue
                if all(x in (r["text"] + " " + r.get("statement", "")).lower() for x in w)]

    # ------------------------------------------------------------------ wake
    def _next_id(self) -> str:
        used = [int(i[1:]) for i in self.records] + [
            int(e["id"][1:]) for e in store.journal_read(self.journal) if "id" in e]
        return f"m{1 + max(used + [0]):04d}"

    def note(self, fact: Fact, statement: str = "") -> tuple[str, bool]:
        """Journal a fact to be learned (fsync'd: acknowledged from here). Returns (id, new);
        a fact already known or already noted returns its id and False."""
        for r in list(self.records.values()) + self.queue:
            old = Fact.from_dict(r["fact"])
            if old.key() == fact.key() and old.object.lower() == fact.object.lower():
                return r["id"], False
        with self._journal_lock:
            entry = {"id": self._next_id(), "fact": fact.to_dict(),
                     "text": relations.describe(fact), "statement": statement,
                     "noted_at": _now()}
            store.journal_append(self.journal, {"op": "note", **entry})
            self.queue.append(entry)
        return entry["id"], True

    def learn_next(self) -> tuple[str, str | None]:
        """Write the oldest noted fact. Returns (id, superseded id or None); a fact that has
        become a duplicate meanwhile returns the known id and leaves the queue."""
        entry = self.queue[0]
        fid, sup = self._write(entry["id"], Fact.from_dict(entry["fact"]), entry["statement"])
        self.queue.pop(0)
        if fid != entry["id"]:
            self._rewrite_journal(exclude={entry["id"]})
        return fid, sup

    def learn(self, fact: Fact, statement: str = "") -> tuple[str, str | None]:
        """Note a fact and learn everything noted, in order. Returns (id, superseded id or
        None) for this fact; a duplicate returns the known id."""
        fid, new = self.note(fact, statement)
        result = (fid, None)
        while self.queue:
            got = self.learn_next()
            if got[0] == fid:
                result = got
        return result

    def _write(self, fid: str, fact: Fact, statement: str) -> tuple[str, str | None]:
        """Write a noted fact's edit. A correction (same key, other object) reverts the old
        edit before the new one is computed; the old fact leaves the files only after the new
        one is durable."""
        superseded = None
        for i, r in self.records.items():
            old = Fact.from_dict(r["fact"])
            if old.key() == fact.key():
                if old.object.lower() == fact.object.lower():
                    return i, None
                superseded = i
        old_edit = self.editor.revert(superseded) if superseded else None
        companions = relations.companions(
            fact, [f for i, f in self.active().items() if i != superseded])
        try:
            edit = self.editor.write(fact, fid, companions)
        except BaseException:
            if old_edit:   # put the old fact back as it was
                self.editor.add(old_edit)
            raise
        store.atomic_save_arrays(self.folder / "edits" / f"{fid}.safetensors",
                                 store.edit_arrays(edit))
        # every wording the app knows of it, asked once now (1.4 s median, 3.9 s p90 at 100
        # memories; docs/benchmarks.md, forty-third round): sleep's rehearsal goes
        # first to the memories that miss some, without asking the others again
        self.editor.pause()
        asked = probes.wordings(self.editor.model, self.editor.tokenizer, {fid: fact},
                                self.cfg["system_prompt"])[fid]
        rec = {"id": fid, "fact": fact.to_dict(), "text": relations.describe(fact),
               "statement": statement, "status": "pending", "learned_at": _now(),
               "last_audit": None, "wordings": wordings_record(len(asked), probes.missed(asked)),
               "history": [{"time": _now(), "event": "learned",
                            "edit_seconds": round(edit.seconds, 2)}]}
        if superseded:
            rec["supersedes"] = superseded
        with self._journal_lock:
            store.journal_append(self.journal, {"op": "learn", **rec})   # replayed from here
        self.records[fid] = rec
        if superseded:
            self._remove_from_files(self.records.pop(superseded))
        return fid, superseded

    def forget(self, fid: str) -> dict:
        """Revert the edit exactly and remove the fact from every file (a fact still only
        noted leaves the queue and the journal)."""
        noted = [e for e in self.queue if e["id"] == fid]
        if noted:
            self.queue.remove(noted[0])
            self._rewrite_journal(exclude={fid})
            return noted[0]
        self.editor.revert(fid)
        rec = self.records.pop(fid)
        self._remove_from_files(rec)
        return rec

    def _remove_from_files(self, rec: dict):
        fid = rec["id"]
        self._rewrite_journal(exclude={fid})
        (self.folder / "edits" / f"{fid}.safetensors").unlink(missing_ok=True)
        if rec["status"] != "pending":
            # it is in checkpoints: write one without it and drop the older ones
            self.checkpoint(keep=1)

    def _rewrite_journal(self, exclude: set):
        with self._journal_lock:
            store.journal_write(self.journal, [e for e in store.journal_read(self.journal)
                                               if e.get("id") not in exclude])

    # ------------------------------------------------------------------ store
    def _meta(self) -> dict:
        return {"model": self.model_id, "fingerprint": self.fingerprint, "created": _now(),
                "editor": self.cfg["editor"], "layers": self.editor.hp.layers}

    def checkpoint(self, keep: int | None = None) -> str:
        """Consolidate everything active into a new checkpoint; retire the journal."""
        for r in self.records.values():
            r["status"] = "consolidated" if r["status"] == "pending" else r["status"]
        name = store.write_checkpoint(self.folder, self.editor.edits, list(self.records.values()),
                                      self._meta(), keep or self.cfg["keep_checkpoints"])
        self.checkpoint_name = name
        # the journal keeps only the facts still waiting to be learned
        with self._journal_lock:
            store.journal_write(self.journal, [{"op": "note", **e} for e in self.queue])
        for f in (self.folder / "edits").glob("*.safetensors"):
            f.unlink()
        return name

    def _edit_from(self, rec: dict, parts: dict) -> Edit:
        return Edit(rec["id"], Fact.from_dict(rec["fact"]), parts["factors"], parts["keys"],
                    parts["z"], kind=parts["kind"])

    def _load(self):
        manifest = {}
        try:
            manifest = store.read_manifest(self.folder)
        except store.CheckpointError as e:
            self.warnings.append(str(e))
        for name in manifest.get("history", []):
            try:
                meta, ledger, arrays = store.read_checkpoint(self.folder, name, self.fingerprint)
                parts = store.split_edit_arrays(arrays)
                edits = [self._edit_from(r, parts[r["id"]]) for r in ledger]
                self.editor.add(*edits)     # raises on any shape mismatch
                self.records = {r["id"]: r for r in ledger}
                self.checkpoint_name = name
                break
            except (store.CheckpointError, KeyError, ValueError) as e:
                self.editor.revert_all(list(self.editor.edits))
                msg = str(e) if isinstance(e, store.CheckpointError) else \
                    f"checkpoint {name} is inconsistent ({e})"
                self.warnings.append(msg + "; trying the previous one")
        for rec in store.journal_learns(self.journal):
            fid = rec["id"]
            if fid in self.records:
                continue
            path = self.folder / "edits" / f"{fid}.safetensors"
            if not path.exists():
                self.warnings.append(f"journal entry {fid} has no edit file; skipped")
                continue
            sup = rec.get("supersedes")
            if sup in self.records:
                self.editor.revert(sup)
                self.records.pop(sup)
            parts = store.split_edit_arrays(store.load_arrays(path))[fid]
            self.editor.add(self._edit_from(rec, parts))
            self.records[fid] = rec
        self.queue = [e for e in store.journal_notes(self.journal) if e["id"] not in self.records]

    def learn_noted(self, console=None):
        """Learn every noted fact now (commands that do not chat: sleep, export, eval)."""
        while self.queue:
            e = self.queue[0]
            if console:
                from rich.markup import escape

                with console.status(escape(f"learning noted fact [{e['id']}]: {e['text']}")):
                    self.learn_next()
            else:
                self.learn_next()
