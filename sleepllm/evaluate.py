"""`sleepllm eval`: recall, locality and cost of memories on a fact file
(schema: ../shared/eval/README.md).

    --via direct : each statement is parsed into a triple and written straight into the
                   editor, one at a time as wake does (or all, then --batch is not offered:
                   the app only ever edits sequentially), then probed in this process.
    --via chat   : statements are told to the real chat loop (extractor included), /sleep,
                   then a *new process* loads model + checkpoint with an empty context and
                   runs the probes.

Scoring is by free greedy generation: a fact is recalled when its object appears in the
continuation (case-insensitive, word boundary). A neighbour cue is unchanged when its first
5 greedy tokens equal the base model's and no stored object appears in its continuation.
"""
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from sleepllm import probes, relations
from sleepllm.extract import extract

NEIGHBOR_TOKENS = 20
ANSWER_TOKENS = 24   # chat and paraphrase answers: the object comes in the first sentence


def load_facts(path, n=None) -> list[dict]:
    facts = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
    return facts[:n] if n else facts


def probe_set(facts, tokenizer, system_prompt=None):
    """Every probe of the protocol as (kind, fact index, token ids)."""
    items = []
    for i, f in enumerate(facts):
        items.append(("raw", i, probes.raw_ids(tokenizer, f["prompt"])))
        items += [("chat", i, probes.chat_ids(tokenizer, q, system_prompt)) for q in f["questions"]]
        items += [("para", i, probes.chat_ids(tokenizer, q, system_prompt))
                  for q in f["paraphrases"]]
        items += [("neighbor", i, probes.raw_ids(tokenizer, c)) for c in f["neighbors"]]
    items += [("general", -1, probes.chat_ids(tokenizer, q, system_prompt))
              for q in probes.general_questions()]
    return items


def run_probes(model, tokenizer, items, facts, drafts=None):
    """Outputs of every probe. A recall probe (raw, chat, paraphrase) stops once it names its
    fact's object: only that is scored. Neighbour and general probes run their full length,
    their text is compared with the base model's.

    `drafts`: a guess of each item's output (text or None), e.g. what the probe gave before
    sleep. Guesses are checked in one teacher-forced pass (probes.generate): the outputs are
    the greedy ones whatever the guesses; right guesses only save the token-by-token steps."""
    out = [None] * len(items)     # in the order of items; generated kind by kind
    for kind in ("raw", "chat", "para", "neighbor", "general"):
        sel = [(n, it) for n, it in enumerate(items) if it[0] == kind]
        n_tok = NEIGHBOR_TOKENS if kind == "neighbor" else (16 if kind == "raw" else ANSWER_TOKENS)
        until = None if kind in ("neighbor", "general") else \
            [probes.named(facts[i]["object"]) for _, (_, i, _) in sel]
        guess = None
        if drafts is not None:
            guess = [tokenizer.encode(drafts[n], add_special_tokens=False) if drafts[n] else None
                     for n, _ in sel]
        texts = probes.generate(model, tokenizer, [ids for _, (_, _, ids) in sel],
                                max_tokens=n_tok, until=until, drafts=guess)
        for (n, (k, i, ids)), t in zip(sel, texts):
            out[n] = (k, i, ids, t)
    return out


def first_guesses(items, facts, base):
    """Drafts for probes of an edited model, from what is known before probing it: a raw cue
    continued with its object, and the base model's own answer to a general question (half of
    them stay as they were at 100 facts). Chat answers have no cheap guess, and the neighbour
    cues' base text is a poor one (4 % unchanged at 100 facts): a wrong guess costs its pass."""
    out = []
    for (kind, i, _), (_, _, _, b) in zip(items, base):
        if kind == "raw":
            out.append(" " + facts[i]["object"])
        elif kind == "general":
            out.append(b)
        else:
            out.append(None)
    return out


def first_tokens(tokenizer, text, n=5):
    return tokenizer.encode(text)[:n] if text else []


def seen_wordings(written) -> list[set]:
    """Per fact, the cues and questions the editor writes or opens on (relations.wordings) for
    the facts written from its statement (`written`: a list of Facts per fact): a probe worded
    exactly so tests recall of a trained wording; the rest, of a wording it never saw."""
    return [{w for x in xs for ws in relations.wordings(x) for w in ws} for xs in written]


def told_cues(written) -> set:
    """The statement cues of every fact written (relations.cues: "Jarek lives in the city
    of"), lower-cased. A neighbour cue that is one of them asks for a fact the user told in
    the same run ("Jarek lives in the city of" is another fact's neighbour, and Jarek's home
    is told later): its answer *should* change."""
    return {c.lower() for xs in written for x in xs for c in relations.cues(x)}


def score(facts, base, after, tokenizer, stored_objects, seen=None, told=None):
    """Per-fact and aggregate scores from base and edited probe outputs (same order). `seen`
    (seen_wordings): also score the probes worded otherwise than any trained wording. `told`
    (told_cues): also score the neighbour cues that are not a told fact's own cue apart."""
    per = [{"id": f.get("id"), "object": f["object"], "raw": 0, "chat": [], "para": [],
            "neighbors": [], "base_raw": 0, "base_chat": []} for f in facts]
    general_same = []
    contamination = []
    objects = [o for o in stored_objects if o]
    unseen, asked = {"raw": [], "chat": [], "para": []}, {}
    untold, n_told = [], 0
    for (kind, i, _, b), (_, _, _, a) in zip(base, after):
        if seen is not None and kind in unseen:
            j = asked[i, kind] = asked.get((i, kind), -1) + 1
            text = {"raw": [facts[i]["prompt"]], "chat": facts[i]["questions"],
                    "para": facts[i]["paraphrases"]}[kind][j]
            if text not in seen[i]:
                unseen[kind].append(probes.hit(facts[i]["object"], a))
        if kind == "general":
            general_same.append(first_tokens(tokenizer, a, 8) == first_tokens(tokenizer, b, 8))
            continue
        f = facts[i]
        if kind == "raw":
            per[i]["raw"] = probes.hit(f["object"], a)
            per[i]["base_raw"] = probes.hit(f["object"], b)
            per[i]["raw_text"] = a
        elif kind in ("chat", "para"):
            per[i][kind].append(probes.hit(f["object"], a))
            if kind == "chat":
                per[i]["base_chat"].append(probes.hit(f["object"], b))
                per[i]["chat_text"] = a
        else:
            named = any(probes.hit(o, a) and not probes.hit(o, b) for o in objects)
            same = first_tokens(tokenizer, a) == first_tokens(tokenizer, b) and not named
            per[i]["neighbors"].append(same)
            contamination.append(named)
            if told is not None:
                j = asked[i, kind] = asked.get((i, kind), -1) + 1
                if f["neighbors"][j].lower() in told:
                    n_told += 1
                else:
                    untold.append(same)
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0
    new = [p for p in per if not (p["base_raw"] or any(p["base_chat"]))]
    agg = {
        "n": len(facts),
        "raw_recall": mean([p["raw"] for p in per]),
        "chat_recall": mean([mean(p["chat"]) for p in per]),
        "paraphrase_recall": mean([mean(p["para"]) for p in per]),
        "neighbors_unchanged": mean([x for p in per for x in p["neighbors"]]),
        "neighbor_contamination": mean(contamination),
        "general_unchanged": mean(general_same),
        "base_known": len(per) - len(new),
        "raw_recall_new": mean([p["raw"] for p in new]),
        "chat_recall_new": mean([mean(p["chat"]) for p in new]),
        "paraphrase_recall_new": mean([mean(p["para"]) for p in new]),
    }
    if seen is not None:      # None where no probe is unseen (not a recall of 0)
        rate = lambda xs: mean(xs) if xs else None
        agg.update({"raw_recall_unseen": rate(unseen["raw"]),
                    "chat_recall_unseen": rate(unseen["chat"]),
                    "paraphrase_recall_unseen": rate(unseen["para"]),
                    "unseen_probes": {k: len(v) for k, v in unseen.items()}})
    if told is not None:
        agg.update({"neighbors_unchanged_untold": mean(untold), "neighbors_told": n_told})
    for p in per:
        for k in ("chat", "para"):
            p[k] = mean(p[k])
        p["neighbors"] = mean(p["neighbors"])
        p["base_chat"] = any(p["base_chat"])
    return agg, per


def baseline(model, tokenizer, facts, system_prompt=None, cache=None):
    """The unedited model's probe outputs and perplexity: (items, outputs, ppl). `cache`: a
    JSON file that keeps them between runs of a script on the same facts."""
    items = probe_set(facts, tokenizer, system_prompt)
    if cache and Path(cache).exists():
        cached = json.loads(Path(cache).read_text())
        return items, [(k, i, ids, t) for (k, i, ids), t in zip(items, cached["outputs"])], \
            cached["ppl"]
    base, ppl = run_probes(model, tokenizer, items, facts), probes.perplexity(model, tokenizer)
    if cache:
        Path(cache).write_text(json.dumps({"outputs": [t for *_, t in base], "ppl": ppl}))
    return items, base, ppl


def eval_direct(memory, model, tokenizer, facts, progress=None):
    """Tell every fact to the editor (sequential), return the JSON-ready report."""
    system = memory.cfg["system_prompt"]
    items, base, ppl_base = baseline(model, tokenizer, facts, system)
    seconds, extracted = [], []
    t_all = time.perf_counter()
    for k, f in enumerate(facts):
        got = extract(f["statement"])
        extracted.append(got[0] if got else None)
        if got:
            t0 = time.perf_counter()
            memory.learn(got[0], f["statement"])
            seconds.append(time.perf_counter() - t0)
        if progress:
            progress(k + 1, len(facts))
    write_seconds = time.perf_counter() - t_all
    after = run_probes(model, tokenizer, items, facts, first_guesses(items, facts, base))
    ppl_after = probes.perplexity(model, tokenizer)
    written = [[e] if e else [] for e in extracted]
    agg, per = score(facts, base, after, tokenizer, [f["object"] for f in facts],
                     seen_wordings(written), told_cues(written))
    bytes_total = sum((memory.folder / "edits" / f"{i}.safetensors").stat().st_size
                      for i in memory.records
                      if (memory.folder / "edits" / f"{i}.safetensors").exists())
    agg.update({
        "via": "direct",
        "ppl_base": ppl_base, "ppl_after": ppl_after, "ppl_drift": ppl_after / ppl_base - 1,
        "edit_seconds_median": statistics.median(seconds) if seconds else None,
        "edit_seconds_p90": _p90(seconds),
        "write_seconds_total": write_seconds,
        "bytes_per_fact": bytes_total / max(1, len(memory.records)),
        "extracted": sum(e is not None for e in extracted),
        "editor": memory.cfg["editor"],
        "facts": per,
    })
    return agg


def eval_context(model, tokenizer, facts, system_prompt=None):
    """Baseline: no editing; the statements are pasted into the system prompt (what
    retrieval-based memories do) and the raw cues follow them as a paragraph. Same probes and
    scoring as the other paths; neighbours and general questions are asked with the same
    context."""
    notes = " ".join(f["statement"] for f in facts)
    system = ((system_prompt + "\n\n") if system_prompt else "") + \
        "What the user has told you about themselves and people they know: " + notes
    items, base, ppl_base = baseline(model, tokenizer, facts, system_prompt)
    ctx_items = []   # the same probes in the same order, with the notes in front
    for (kind, i, ids), (_, _, ctx_ids) in zip(items, probe_set(facts, tokenizer, system)):
        if kind in ("raw", "neighbor"):
            ctx_ids = probes.raw_ids(tokenizer, notes + "\n\n" + tokenizer.decode(ids))
        ctx_items.append((kind, i, ctx_ids))
    after = run_probes(model, tokenizer, ctx_items, facts)
    agg, per = score(facts, base, after, tokenizer, [f["object"] for f in facts])
    agg.update({"via": "context", "ppl_base": ppl_base, "ppl_after": ppl_base,
                "ppl_drift": 0.0, "context_tokens": len(tokenizer.encode(system)),
                "facts": per})
    return agg


def _p90(xs):
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


def table(report, console, title="sleepllm eval"):
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k in ("n", "raw_recall", "chat_recall", "paraphrase_recall", "neighbors_unchanged",
              "neighbors_unchanged_untold", "neighbors_told", "neighbor_contamination",
              "general_unchanged", "base_known", "chat_recall_new",
              "raw_recall_unseen", "chat_recall_unseen", "paraphrase_recall_unseen",
              "ppl_base", "ppl_after", "ppl_drift", "edit_seconds_median", "edit_seconds_p90",
              "ack_seconds_median", "bytes_per_fact", "extraction_precision", "extraction_recall"):
        if k in report and report[k] is not None:
            v = report[k]
            t.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    console.print(t)


def _extraction_scores(facts, extracted):
    """Precision: extracted facts whose object is the gold one; recall: gold facts found."""
    correct = sum(any(probes.hit(f["object"], e.object) and probes.hit(e.object, f["object"])
                      for e in ex) for f, ex in zip(facts, extracted))
    n_ex = sum(len(ex) for ex in extracted)
    return correct / max(1, n_ex), correct / max(1, len(facts))


def probe_outputs(model_spec, memory_folder, facts_file, n, cfg_file=None, drafts_file=None):
    """In *this* process (meant to be a new one): load model + memory, run every probe.
    `drafts_file`: JSON list of guesses of the outputs (run_probes), e.g. those before sleep."""
    from rich.console import Console

    from sleepllm import model as models
    from sleepllm.config import load_config
    from sleepllm.memory import Memory

    cfg = load_config(cfg_file, {"model": model_spec})
    model, tok, path = models.load(cfg["model"])
    Memory(Path(memory_folder), model, tok, cfg, model_spec, Console(stderr=True))
    facts = load_facts(facts_file, n)
    items = probe_set(facts, tok, cfg["system_prompt"])
    drafts = json.loads(Path(drafts_file).read_text()) if drafts_file else None
    return {"outputs": [t for *_, t in run_probes(model, tok, items, facts, drafts)],
            "ppl": probes.perplexity(model, tok)}


def eval_chat(session, facts_file, n, cycles=1, cfg_file=None, progress=None):
    """Statements told through the REPL path, /sleep after each cycle, probes in a new process."""
    import subprocess
    import sys

    from sleepllm import sleep as sleeping

    memory, model, tok = session.memory, session.model, session.tokenizer
    facts = load_facts(facts_file, n)
    wall = {"baseline": 0.0, "replies": 0.0, "edits": 0.0, "probes_before_sleep": 0.0,
            "sleep": 0.0, "probes_after_sleep": 0.0, "new_process": 0.0}
    t_phase = time.perf_counter()
    items, base, ppl_base = baseline(model, tok, facts, session.cfg["system_prompt"])
    wall["baseline"] = time.perf_counter() - t_phase
    size = -(-len(facts) // cycles)
    chunks = [facts[i:i + size] for i in range(0, len(facts), size)]
    extracted, seconds, acks, cycle_reports, sleep_reports = [], [], [], [], []
    from io import StringIO

    from rich.console import Console

    quiet = Console(file=StringIO())
    told = 0
    for c, chunk in enumerate(chunks):
        for f in chunk:
            session.conv.clear()      # each statement on its own, as after /clear
            session.person = None
            t0 = time.perf_counter()
            session.reply(f["statement"], lambda s: None)
            wall["replies"] += time.perf_counter() - t0
            t0 = time.perf_counter()   # as the REPL does: noted (acknowledged), then learned
            ids = session.learn_from(f["statement"], quiet, wait=False)
            noted = time.perf_counter() - t0
            session.settle(quiet)
            learned = time.perf_counter() - t0
            if ids:
                acks.append(noted)
                seconds.append(learned)
            wall["edits"] += learned
            extracted.append([Fact_from(memory, i) for i in ids])
            told += 1
            if progress:
                progress(told, len(facts))
        told_facts = facts[: told]
        t_phase = time.perf_counter()
        base_told = [b for b in base if b[1] < told or b[0] == "general"]
        told_items = [b[:3] for b in base_told]
        before = run_probes(model, tok, told_items, told_facts,
                            first_guesses(told_items, told_facts, base_told))
        agg_before, _ = score(told_facts, base_told, before, tok, [f["object"] for f in facts])
        wall["probes_before_sleep"] += time.perf_counter() - t_phase
        t0 = time.perf_counter()
        rep = sleeping.run(memory)
        slept = time.perf_counter() - t0
        wall["sleep"] += slept
        sleep_reports.append({"seconds": slept, "phases": rep["phases"],
                              "counts": rep["counts"], "rolled_back": rep["rolled_back"],
                              "pruned": len(rep["pruned"]), "refreshed": len(rep["refreshed"]),
                              "rehearsed": rep.get("rehearsed", []),
                              "consolidation": rep.get("consolidation"),
                              "skipped_for_time": rep["skipped_for_time"],
                              "n_facts": len(memory.records)})
        cycle_reports.append({"cycle": c + 1, "told": told, "before_sleep": _recall(agg_before)})
        if c + 1 < len(chunks):   # the last cycle is scored by the new process below
            t_phase = time.perf_counter()
            after = run_probes(model, tok, told_items, told_facts, [t for *_, t in before])
            agg_after, _ = score(told_facts, base_told, after, tok, [f["object"] for f in facts])
            cycle_reports[-1].update({"after_sleep": _recall(agg_after),
                                      "first_cycle_after": _first_cycle(chunks[0], told_facts,
                                                                        after)})
            wall["probes_after_sleep"] += time.perf_counter() - t_phase
    # the final probes run in a new process: model + checkpoint, empty context
    code = ("import json, sys, sleepllm.evaluate as e; "
            "print(json.dumps(e.probe_outputs(*json.loads(sys.argv[1]))))")
    # the last outputs before sleep are the new process's guesses (sleep changes few answers)
    fd, drafts_file = tempfile.mkstemp(prefix="sleepllm-drafts-", suffix=".json")   # 0600
    with os.fdopen(fd, "w") as fh:
        json.dump([t for *_, t in before], fh)
    drafts_file = Path(drafts_file)
    args = json.dumps([session.cfg["model"] if session.cfg["model"] != "default" else "default",
                       str(memory.folder), str(facts_file), n, cfg_file, str(drafts_file)])
    t_phase = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True,
                             check=True)
    finally:
        drafts_file.unlink()
    wall["new_process"] = time.perf_counter() - t_phase
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    after = [(k, i, ids, t) for (k, i, ids), t in zip(items, fresh["outputs"])]
    agg, per = score(facts, base, after, tok, [f["object"] for f in facts],
                     seen_wordings(extracted), told_cues(extracted))
    first = per[: len(chunks[0])]     # per-fact chat recall, facts in telling order
    cycle_reports[-1].update({"after_sleep": _recall(agg),
                              "first_cycle_after": sum(p["chat"] for p in first) / len(first)})
    precision, recall = _extraction_scores(facts, extracted)
    ckpt = memory.folder / "checkpoints" / memory.checkpoint_name / "edits.safetensors"
    agg.update({
        "via": "chat", "cycles": cycles,
        "ppl_base": ppl_base, "ppl_after": fresh["ppl"], "ppl_drift": fresh["ppl"] / ppl_base - 1,
        "extraction_precision": precision, "extraction_recall": recall,
        "edit_seconds_median": statistics.median(seconds) if seconds else None,
        "edit_seconds_p90": _p90(seconds),
        # from the message to "noted": the fact is in the fsync'd journal (the REPL gives the
        # prompt back here; the edit is written in the background)
        "ack_seconds_median": statistics.median(acks) if acks else None,
        "bytes_per_fact": ckpt.stat().st_size / max(1, len(memory.records)),
        "before_sleep": cycle_reports[-1]["before_sleep"],
        "cycle_reports": cycle_reports, "sleep": sleep_reports,
        "wall_seconds": wall,   # where the run's time went (the new process: load + probes)
        "editor": session.cfg["editor"], "facts": per,
    })
    return agg


def Fact_from(memory, fid):
    from sleepllm.relations import Fact

    return Fact.from_dict(memory.records[fid]["fact"])


def _recall(agg):
    return {k: agg[k] for k in ("raw_recall", "chat_recall", "paraphrase_recall",
                                "neighbors_unchanged", "general_unchanged")}


def _first_cycle(first, told_facts, outputs):
    """Chat recall of the first cycle's facts (do earlier cycles survive later ones?)."""
    ids = {id(f) for f in first}
    idx = {i for i, f in enumerate(told_facts) if id(f) in ids}
    hits = [probes.hit(told_facts[i]["object"], t) for k, i, _, t in outputs
            if k == "chat" and i in idx]
    return sum(hits) / max(1, len(hits))
