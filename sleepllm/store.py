"""On-disk format. Everything is safetensors, JSON or YAML; every write is atomic
(temp file in the same folder, fsync, rename, fsync of the folder); files are 0600.

Memory folder layout:

    journal.jsonl                 wake journal: a "note" line when a fact is told (it is
                                  acknowledged from then on), a "learn" line when its edit is
                                  written (a forgotten fact is removed from it, and from every
                                  other file)
    edits/<id>.safetensors        the edit of each fact learned since the last checkpoint
    checkpoints/ckpt-<n>/         one consolidated state
        edits.safetensors         per edit and layer, fp16: a memory neuron's <id>.<l>.G, .U
                                  (gate and up rows, d), .D (down column, d_out) and .X (its
                                  anchor inputs, p×d: later gates are trained closed on them);
                                  a MEMIT edit's .A (d_out×r), .B (d_k×r), .K (r×d_k)
        ledger.json               facts: id, text, the fact (subject, relation, object,
                                  noun, and "verb" where the user said one: "use a"),
                                  status, history (learned, audits, refreshes, rehearsals
                                  with the wordings answered before and after), when sleep
                                  last rehearsed it, the wordings it last missed (asked
                                  when written, and at each rehearsal), the last audit
                                  (verdicts and what each probe answered: the next audit's
                                  drafts)
    manifest.json                 points at the current checkpoint (written last)

Cache (per model, under <data dir>/cache/<fingerprint>/, stats.load): prefixes.json,
negatives_l*.safetensors (ordinary text's MLP inputs, float16), strangers_l*.safetensors
(others' facts' MLP inputs, float16, and whom each row is about), cov_l*.safetensors (C,
float32) and cinv_l*.safetensors (C⁻¹, float64 bytes).
"""
import json
import os
import tempfile
from pathlib import Path

import mlx.core as mx
import numpy as np


def _fsync_dir(folder: Path):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic(path: Path, write, suffix=""):
    """write(tmp_path) into a temp file beside `path`; chmod 0600, fsync, rename, fsync dir."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o600)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes):
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_json(path: Path, obj):
    atomic_write_bytes(path, json.dumps(obj, indent=1, ensure_ascii=False).encode())


def atomic_save_arrays(path: Path, arrays: dict, metadata: dict | None = None):
    """numpy arrays -> safetensors, atomically."""
    _atomic(path, lambda tmp: mx.save_safetensors(
        tmp, {k: mx.array(v) for k, v in arrays.items()}, metadata=metadata or {}),
        suffix=".safetensors")


def load_arrays(path: Path) -> dict:
    """safetensors -> {name: numpy array}."""
    return {k: np.array(v) for k, v in mx.load(str(path)).items()}


# ------------------------------------------------------------------ edits <-> arrays

def edit_arrays(edit) -> dict:
    """A MEMIT edit's factors and keys (<id>.<layer>.A/B/K), or a memory neuron's vectors and
    anchor inputs (<id>.<layer>.G/U/D/X, sleepllm/neurons.py)."""
    names = NEURON_PARTS if edit.kind == "neuron" else MEMIT_PARTS
    out = {}
    for l, vectors in edit.factors.items():
        for part, a in zip(names, tuple(vectors) + (edit.keys[l],)):
            out[f"{edit.id}.{l}.{part}"] = a
    if edit.z is not None:
        out[f"{edit.id}.target.z"] = edit.z
    return out


MEMIT_PARTS, NEURON_PARTS = ("A", "B", "K"), ("G", "U", "D", "X")


def split_edit_arrays(arrays: dict) -> dict:
    """{edit id: {"kind", "factors": {l: (A, B) or (g, u, d)}, "keys": {l: K or X}, "z"}} from
    edit_arrays' naming."""
    out = {}
    for name, a in arrays.items():
        eid, l, part = name.rsplit(".", 2)
        d = out.setdefault(eid, {"factors": {}, "keys": {}, "parts": {}, "z": None})
        if (l, part) == ("target", "z"):
            d["z"] = a
            continue
        d["parts"].setdefault(int(l), {})[part] = a
    for d in out.values():
        kinds = set()
        for l, p in d.pop("parts").items():
            names = next((n for n in (MEMIT_PARTS, NEURON_PARTS) if set(p) == set(n)), None)
            if names is None:
                raise ValueError(f"incomplete edit factors at layer {l}")
            kinds.add("neuron" if names == NEURON_PARTS else "memit")
            d["factors"][l] = tuple(p[n] for n in names[:-1])
            d["keys"][l] = p[names[-1]]
        if len(kinds) > 1:
            raise ValueError("an edit mixes MEMIT factors and a memory neuron")
        d["kind"] = kinds.pop() if kinds else "memit"
    return out


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------ journal

def journal_append(path: Path, entry: dict):
    """One JSON line, fsync'd before returning: after this the fact is durable."""
    line = json.dumps(entry, ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def journal_write(path: Path, entries: list[dict]):
    """Replace the journal with these entries, atomically (a forget, a checkpoint)."""
    atomic_write_bytes(path, "".join(json.dumps(e, ensure_ascii=False) + "\n"
                                     for e in entries).encode())


def journal_read(path: Path) -> list[dict]:
    """Entries in order; a torn last line (crash mid-write) is ignored."""
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def journal_learns(path: Path) -> list[dict]:
    """The ledger records of the journal's "learn" entries, in order (a record's "supersedes"
    names the fact it replaced)."""
    return [{k: v for k, v in e.items() if k != "op"} for e in journal_read(path)
            if e.get("op") == "learn" and "id" in e]


def journal_notes(path: Path) -> list[dict]:
    """The facts noted but not (yet) learned: "note" entries with no "learn" entry, in order.
    Notes journalled before they carried their "text" get it from their fact."""
    from sleepllm.relations import Fact, describe

    entries = journal_read(path)
    learned = {e.get("id") for e in entries if e.get("op") == "learn"}
    notes = [{k: v for k, v in e.items() if k != "op"} for e in entries
             if e.get("op") == "note" and "id" in e and e["id"] not in learned]
    for e in notes:
        e.setdefault("text", describe(Fact.from_dict(e["fact"])))
    return notes


# ------------------------------------------------------------------ checkpoints

class CheckpointError(Exception):
    pass


def write_checkpoint(folder: Path, edits: dict, ledger: list, meta: dict, keep: int) -> str:
    """Write ckpt-<n> (edits + ledger + meta with file hashes), then the manifest last.

    Returns the checkpoint name. Older checkpoints beyond `keep` are removed."""
    import shutil

    root = folder / "checkpoints"
    root.mkdir(mode=0o700, exist_ok=True)
    manifest = read_manifest(folder)
    # numbers never reused, even for a folder left by a crash before its manifest was written
    taken = [c.name for c in root.iterdir() if c.name.startswith("ckpt-")]
    n = 1 + max([int(c.split("-")[1]) for c in manifest.get("history", []) + taken] + [0])
    name = f"ckpt-{n}"
    tmp = root / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(mode=0o700)
    arrays = {}
    for e in edits.values():
        arrays.update(edit_arrays(e))
    atomic_save_arrays(tmp / "edits.safetensors", arrays)
    atomic_write_json(tmp / "ledger.json", ledger)
    meta = dict(meta, files={f: sha256_file(tmp / f) for f in ("edits.safetensors", "ledger.json")})
    atomic_write_json(tmp / "meta.json", meta)
    os.replace(tmp, root / name)
    _fsync_dir(root)
    history = [name] + [c for c in manifest.get("history", []) if (root / c).exists()]
    atomic_write_json(folder / "manifest.json", {"version": 1, "current": name,
                                                 "history": history[:keep]})
    for old in history[keep:]:
        shutil.rmtree(root / old, ignore_errors=True)
    return name


def read_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt ({e}); run `sleepllm rollback --memory "
                              f"{folder}` to pick an earlier checkpoint") from e


def read_checkpoint(folder: Path, name: str, fingerprint: str):
    """(meta, ledger, arrays) of one checkpoint, verified; CheckpointError says what is wrong."""
    ck = folder / "checkpoints" / name
    try:
        meta = json.loads((ck / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {name} is unreadable ({e.__class__.__name__})") from e
    if meta.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"checkpoint {name} was made for model {meta.get('model')!r} (weights "
            f"{meta.get('fingerprint')}), not the loaded one ({fingerprint}); start with "
            f"--model {meta.get('model')} or use another --memory folder")
    for f, digest in meta.get("files", {}).items():
        if not (ck / f).exists() or sha256_file(ck / f) != digest:
            raise CheckpointError(f"checkpoint {name}: {f} is truncated or was modified")
    ledger = json.loads((ck / "ledger.json").read_text())
    arrays = load_arrays(ck / "edits.safetensors")
    return meta, ledger, arrays
