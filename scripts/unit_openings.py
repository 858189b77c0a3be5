"""Which memory neurons open where on a neighbour cue (docs/editing.md, thirty-third round).

    .venv/bin/python scripts/unit_openings.py IDS [CUES] [--facts FILE] [editor_key=value ...]

Writes the facts IDS (comma-separated ids of a fact file, default the dev set) into a fresh
memory through the extractor, as `sleepllm eval --via direct` does; then, for each of their
neighbour cues and each of CUES ("|"-separated), continues it greedily before and after
(20 tokens) and prints SAME (the first 5 tokens as before) or DIFF, and every unit whose
output on the cue and its continuation reaches 1 % of its level, as
subject/relation:opening@position'token'.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import sleepllm  # noqa: F401  (before mlx: the BLAS)
import numpy as np

from sleepllm import config, memit, memory, neurons, probes
from sleepllm import model as models
from sleepllm.evaluate import first_tokens
from sleepllm.extract import extract

DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "eval" / "dev_facts.jsonl"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ids")
    ap.add_argument("cues", nargs="?", default="")
    ap.add_argument("--facts", default=str(DEV))
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    by_id = {f["id"]: f for f in map(json.loads, open(args.facts))}
    facts = [by_id[i] for i in args.ids.split(",")]
    cfg = config.load_config(None, config.parse_overrides(args.overrides))
    model, tok, mid = models.load(cfg["model"])
    cues = [n for f in facts for n in f["neighbors"]] + [c for c in args.cues.split("|") if c]
    ids = [probes.raw_ids(tok, c) for c in cues]
    base = probes.generate(model, tok, ids, max_tokens=20)
    mem = memory.Memory(tempfile.mkdtemp(), model, tok, cfg, mid)
    mem.editor.load_stats()
    for f in facts:
        got = extract(f["statement"])
        if not got:
            print(f["id"], "nothing extracted")
            continue
        t = time.perf_counter()
        mem.learn(got[0], f["statement"])
        print(f["id"], got[0], f"{time.perf_counter() - t:.1f} s", flush=True)
    after = probes.generate(model, tok, ids, max_tokens=20)
    L = mem.editor.neuron_layer
    units = [e for e in mem.editor.edits.values() if e.kind == "neuron"]
    for cue, i, b, a in zip(cues, ids, base, after):
        full = list(i) + tok.encode(a, add_special_tokens=False)
        X = memit.mlp_inputs(model, [np.array([full])], L)
        opened = []
        for e in units:
            g, u, _ = (v.astype(np.float64) for v in e.factors[L])
            o = neurons.output(X, g, u) / neurons.level(e.keys[L], g, u)
            j = int(np.argmax(np.abs(o)))
            if abs(o[j]) > 0.01:
                opened.append(f"{e.fact.subject}/{e.fact.relation}:{o[j]:.2f}@{j}"
                              f"{tok.decode([full[j]])!r}")
        same = first_tokens(tok, b) == first_tokens(tok, a)
        print("SAME" if same else "DIFF", repr(cue), "|", repr(b[:50]), "->", repr(a[:50]))
        print(f"    {len(i)} prompt tokens; open:", ", ".join(opened) or "none")


if __name__ == "__main__":
    main()
