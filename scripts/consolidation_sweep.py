"""Rows of the consolidation sweeps in docs/editing.md.

    N facts:   the first N facts of a fact file written one at a time (as wake does) and
               probed ("wake"); then sleep's batch solve (`Editor.consolidate`) and the same
               probes again ("consolidated"). Memory in a temporary folder.
    --memory:  start from a copy of an existing memory folder instead (told the first N facts
               of the file, in order) and only re-solve: one "consolidated" row per setting,
               each from the same stored targets z — a fast sweep of the solve's λ, α and
               null-space threshold, with no v* search.

    .venv/bin/python scripts/consolidation_sweep.py N [editor_key=value ...] \
        [--facts ../shared/eval/dev_facts.jsonl] [--memory DIR] [--base FILE]
    settings of a --memory sweep are separated by "/":  lam=1500 / lam=15000 nullspace=0.005
"""
import argparse
import shutil
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
    ap.add_argument("--memory", help="re-solve a copy of this memory folder")
    ap.add_argument("--base", help="cache of the base model's probe outputs (JSON)")
    a = ap.parse_args()
    settings = [s.split() for s in " ".join(a.overrides).split("/")] if a.memory else [a.overrides]
    cfg = config.load_config(None, None if a.memory else config.parse_overrides(a.overrides))
    model, tok, mid = models.load(cfg["model"])
    facts = evaluate.load_facts(a.facts, a.n)
    items, base, ppl0 = evaluate.baseline(model, tok, facts, cfg["system_prompt"], a.base)
    folder = tempfile.mkdtemp()
    if a.memory:
        shutil.copytree(a.memory, folder, dirs_exist_ok=True)
    mem = memory.Memory(folder, model, tok, cfg, mid)

    def report(tag):
        after = evaluate.run_probes(model, tok, items, facts)
        agg, per = evaluate.score(facts, base, after, tok, [f["object"] for f in facts])
        drift = probes.perplexity(model, tok) / ppl0 - 1
        print(tag, {k: round(agg[k], 3) for k in KEYS}, "ppl drift", round(drift, 4))
        print("  chat recall per 10 facts",
              [round(sum(p["chat"] for p in per[i:i + 10]) / len(per[i:i + 10]), 2)
               for i in range(0, len(per), 10)], flush=True)

    if not a.memory:
        seconds = []
        for f in facts:
            got = extract(f["statement"])
            t = time.perf_counter()
            if got:
                mem.learn(got[0])
            seconds.append(time.perf_counter() - t)
        print("edit seconds, median", round(statistics.median(seconds), 1), flush=True)
        report("wake")
    for s in settings:
        mem.editor.retune(**config.parse_overrides(s, section=None))
        t = time.perf_counter()
        mem.editor.consolidate()
        print("consolidate seconds", round(time.perf_counter() - t, 1), " ".join(s))
        report("consolidated " + " ".join(s))


if __name__ == "__main__":
    main()
