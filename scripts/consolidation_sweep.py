"""One row of the consolidation sweep in docs/editing.md: the first N facts of a fact file
written one at a time (as wake does) and probed; then sleep's batch solve
(`Editor.consolidate`) and the same probes again. Memory in a temporary folder.

    .venv/bin/python scripts/consolidation_sweep.py N [editor_key=value ...] \
        [--facts ../shared/eval/dev_facts.jsonl]
"""
import argparse
import statistics
import tempfile
import time

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
from sleepllm import config, evaluate, memory, probes
from sleepllm import model as models
from sleepllm.extract import extract

KEYS = ("raw_recall", "chat_recall", "paraphrase_recall", "neighbors_unchanged",
        "neighbor_contamination", "general_unchanged")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("overrides", nargs="*", help="editor keys, e.g. contrast=0")
    ap.add_argument("--facts", default="../shared/eval/dev_facts.jsonl")
    a = ap.parse_args()
    cfg = config.load_config(None)
    for kv in a.overrides:
        k, v = kv.split("=")
        cfg["editor"][k] = type(cfg["editor"][k])(v)
    model, tok, mid = models.load(cfg["model"])
    mem = memory.Memory(tempfile.mkdtemp(), model, tok, cfg, mid)
    facts = evaluate.load_facts(a.facts, a.n)
    items, base, ppl0 = evaluate.baseline(model, tok, facts, cfg["system_prompt"])
    seconds = []
    for f in facts:
        got = extract(f["statement"])
        t = time.perf_counter()
        if got:
            mem.learn(got[0])
        seconds.append(time.perf_counter() - t)
    print("edit seconds, median", round(statistics.median(seconds), 1), flush=True)

    def report(tag):
        after = evaluate.run_probes(model, tok, items)
        agg, per = evaluate.score(facts, base, after, tok, [f["object"] for f in facts])
        drift = probes.perplexity(model, tok) / ppl0 - 1
        print(tag, {k: round(agg[k], 3) for k in KEYS}, "ppl drift", round(drift, 4))
        print("  chat recall per 10 facts",
              [round(sum(p["chat"] for p in per[i:i + 10]) / len(per[i:i + 10]), 2)
               for i in range(0, len(per), 10)], flush=True)

    report("wake")
    t = time.perf_counter()
    mem.editor.consolidate()
    print("consolidate seconds", round(time.perf_counter() - t, 1))
    report("consolidated")


if __name__ == "__main__":
    main()
