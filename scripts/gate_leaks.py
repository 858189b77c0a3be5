"""How far the memory neurons' gates open where they should not (docs/editing.md, thirty-seventh
round) — in minutes, without the v* search.

    .venv/bin/python scripts/gate_leaks.py N [--facts FILE] [--continued K] [--settle]
                                             [editor_key=value ...]

Writes the first N facts of a fact file (default the dev set) into a fresh memory through the
extractor, as `sleepllm eval --via direct` does, but with δ = 0: a gate and its level depend
only on layer L's inputs (the base model's: units at L change L's output, not its input), so
they are the ones a real write fits. `--continued K`: editor.CONTINUED for the run (0: the gate
not shut on continuations). Then, at every token of each neighbour cue and of the base model's
20-token continuation of it, each unit's output as a share of its level:

- neighbour cues that ask for no told fact with a unit open > 0.1, unit-cue pairs > 0.05, the
  sum of openings > 0.01, and per cue its units (--verbose);
- each fact's own unit at its raw cue, chat questions and paraphrases (max over tokens): the
  share ≥ 0.5 (a proxy of recall: the gate open there);
- other units > 0.1 on a fact's own prompts (cross-talk);
- on the held-out text: the mean summed opening per token, tokens with a unit > 0.05.

`--settle`: the same again after sleep's Editor.settle (the gates shut on later memories'
anchors).
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import sleepllm  # noqa: F401  (before mlx: the BLAS)
import numpy as np

from sleepllm import config, editor, memit, memory, neurons, probes, relations
from sleepllm import model as models
from sleepllm.extract import extract

DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "eval" / "dev_facts.jsonl"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("--facts", default=str(DEV))
    ap.add_argument("--continued", type=int, default=editor.CONTINUED)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--settle", action="store_true", help="measure again after Editor.settle")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    editor.CONTINUED = args.continued
    facts = [json.loads(line) for line in open(args.facts)][: args.n]
    cfg = config.load_config(None, config.parse_overrides(args.overrides))
    model, tok, mid = models.load(cfg["model"])
    memit.compute_delta = lambda *a, **k: (np.zeros(model.args.hidden_size), 0.0)
    mem = memory.Memory(tempfile.mkdtemp(), model, tok, cfg, mid)
    ed = mem.editor
    ed.load_stats()
    t0, told, fid_of = time.perf_counter(), set(), {}
    for f in facts:
        got = extract(f["statement"])
        if got:
            fid_of[mem.learn(got[0], f["statement"])[0]] = f["id"]
            told |= {c.lower() for c in relations.cues(got[0])}
    print(f"{len(ed.edits)} units written in {time.perf_counter() - t0:.0f} s")
    measure(args, cfg, model, tok, ed, facts, told, fid_of)
    if args.settle:
        t0 = time.perf_counter()
        changed = ed.settle()
        print(f"\nafter Editor.settle (sleep): {len(changed)} gates changed in "
              f"{time.perf_counter() - t0:.1f} s")
        measure(args, cfg, model, tok, ed, facts, told, fid_of)


def measure(args, cfg, model, tok, ed, facts, told, fid_of):
    L = ed.neuron_layer
    units = []
    for e in ed.edits.values():
        g, u, _ = (v.astype(np.float64) for v in e.factors[L])
        units.append((fid_of.get(e.id), f"{e.fact.subject}/{e.fact.relation}", g, u,
                      neurons.level(e.keys[L], g, u)))
    opening = lambda X: np.array([neurons.output(X, g, u) / lev for *_, g, u, lev in units])
    inputs = lambda ids: memit.mlp_inputs(model, [np.array([ids])], L)

    cues = [c for f in facts for c in f["neighbors"] if c.lower() not in told]
    ids = [probes.raw_ids(tok, c) for c in cues]
    with ed.unedited():
        cont = probes.generate(model, tok, ids, max_tokens=20)
    open_cues = pairs = 0
    total = 0.0
    for cue, i, c in zip(cues, ids, cont):
        full = list(i) + tok.encode(c, add_special_tokens=False)
        o = np.abs(opening(inputs(full)))
        top = o.max(1)
        open_cues += bool((top > 0.1).any())
        pairs += int((top > 0.05).sum())
        total += float(top[top > 0.01].sum())
        if args.verbose and (top > 0.05).any():
            print(f"  {cue!r}: " + ", ".join(
                f"{units[k][1]} {top[k]:.2f} at {tok.decode([full[int(o[k].argmax())]])!r}"
                for k in np.flatnonzero(top > 0.05)))
    print(f"neighbour cues asking for no told fact: {len(cues)}; with a unit > 0.1: {open_cues}; "
          f"pairs > 0.05: {pairs}; sum of openings > 0.01: {total:.2f}")

    own = {"raw": [], "question": [], "paraphrase": []}
    cross = 0
    row = {fid: k for k, (fid, *_) in enumerate(units)}
    for f in facts:
        if f["id"] not in row:
            continue
        k = row[f["id"]]
        for kind, texts in (("raw", [f["prompt"]]), ("question", f["questions"]),
                            ("paraphrase", f["paraphrases"])):
            for q in texts:
                o = opening(inputs(probes.raw_ids(tok, q) if kind == "raw"
                                   else probes.chat_ids(tok, q, cfg["system_prompt"]))).max(1)
                own[kind].append(o[k] >= 0.5)
                cross += int((np.delete(np.abs(o), k) > 0.1).sum())
    print("own unit open >= 0.5: " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in own.items())
          + f"; other units > 0.1 on a fact's prompts: {cross}")

    text = tok.encode(probes.HELDOUT.read_text())
    held = np.concatenate([np.abs(opening(inputs(text[s: s + 256])))
                           for s in range(0, len(text), 256)], axis=1)
    print(f"held-out text, {held.shape[1]} tokens: summed opening per token "
          f"{held.sum(0).mean():.4f}; tokens with a unit > 0.05: {(held.max(0) > 0.05).sum()}")


if __name__ == "__main__":
    main()
