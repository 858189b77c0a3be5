"""How many of the wordings the app knows does each memory of a folder answer? Every cue and
question of relations.every_wording, asked by free greedy generation (probes.wordings), split
into those the v* search trains at wake (the first statement cue, the family's first
`editor.questions` questions) and the rest — what sleep's rehearsal practises.

    .venv/bin/python scripts/wordings.py DIR [--json OUT]
"""
import argparse
import json
import time

import sleepllm  # noqa: F401  (fast BLAS before mlx)

from sleepllm import config, memory, probes, relations
from sleepllm import model as models


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("memory")
    ap.add_argument("--json")
    args = ap.parse_args()
    cfg = config.load_config(None, {})
    model, tok, mid = models.load(cfg["model"])
    mem = memory.Memory(args.memory, model, tok, cfg, mid)
    facts = mem.active()
    t = time.perf_counter()
    asked = probes.wordings(model, tok, facts, cfg["system_prompt"])
    seconds = time.perf_counter() - t
    rows, tally = [], {}
    for fid, fact in facts.items():
        trained = set(relations.cues(fact)[:1])
        trained |= {q for q, _ in relations.questions(fact)[: cfg["editor"]["questions"]]}
        for text, answer, ok, out in asked[fid]:
            kind = ("trained" if text in trained else "other") + \
                   (" question" if answer else " cue")
            kind += " (user)" if fact.is_self else " (person)"
            tally.setdefault(kind, []).append(ok)
            rows.append({"id": fid, "kind": kind, "text": text, "ok": ok, "output": out})
    print(f"{len(facts)} memories, {len(rows)} wordings, {seconds:.0f} s")
    for kind in sorted(tally):
        v = tally[kind]
        print(f"  {kind:28s} {sum(v):4d} / {len(v):4d}  {sum(v) / len(v):.3f}")
    every = [r["ok"] for r in rows]
    print(f"  {'all':28s} {sum(every):4d} / {len(every):4d}  {sum(every) / len(every):.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"memory": args.memory, "memories": len(facts),
                       "answered": sum(every), "wordings": len(every),
                       "by_kind": {k: [sum(v), len(v)] for k, v in tally.items()},
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
