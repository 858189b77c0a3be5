"""Sleep a copy of a memory folder, optionally cut to its first N memories (the rest
forgotten: reverted exactly), with a given `sleep.seconds`, and print where the time went:
the audit's teacher-forced pass and how many probes it settled, then sleep's phases and
decisions. The original folder is not touched. With --facts (the file the memories were
told from, in order) the eval's probes score the memory before and after the sleep, as
`sleepllm eval` does (same process; --base caches the unedited model's outputs for the first
N facts).

    .venv/bin/python scripts/sleep_profile.py MEMORY_DIR [N] [SECONDS] [--facts FILE] [--base FILE]
        [--set sleep.rehearse_steps=5 ...]
"""
import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
from rich.console import Console

from sleepllm import evaluate, probes, sleep
from sleepllm import model as models
from sleepllm.config import load_config, parse_overrides
from sleepllm.memory import Memory


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("memory")
    ap.add_argument("n", type=int, nargs="?")
    ap.add_argument("seconds", type=float, nargs="?")
    ap.add_argument("--facts")
    ap.add_argument("--base")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides, section.key=value")
    a = ap.parse_args()
    n = a.n
    if a.facts and not n:
        ap.error("--facts needs N, the number of facts the memory was told")
    over = {"sleep.seconds": a.seconds} if a.seconds is not None else {}
    over.update(parse_overrides(a.set, section=None))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "memory"
        shutil.copytree(a.memory, folder)
        cfg = load_config(None, over)
        model, tok, _ = models.load(cfg["model"])
        # the unedited model's outputs first (neighbours, general answers, perplexity)
        score = _scorer(model, tok, cfg, a.facts, n, a.base) if a.facts else None
        mem = Memory(folder, model, tok, cfg, cfg["model"], Console(stderr=True))
        for fid in list(mem.records)[n:] if n else []:
            mem.forget(fid)
        if score:
            score("before sleep")
        facts = mem.active()
        items = [(fid, ids, draft) for fid, f in facts.items()
                 for _, ids, draft in probes.fact_probes(f, tok, cfg["system_prompt"])]
        t = time.perf_counter()
        verified = probes.greedy_prefix(model, [i[1] for i in items], [i[2] for i in items])
        t_pass = time.perf_counter() - t
        eos = set(tok.eos_token_ids)
        settled = sum(probes._settled(tok, g, probes.named(facts[fid].object), eos, 24) is not None
                      for g, (fid, _, _) in zip(verified, items))
        print(f"{len(facts)} memories, {len(items)} audit probes: teacher-forced pass "
              f"{t_pass:.1f} s settles {settled}")
        t = time.perf_counter()
        rep = sleep.run(mem)
        print(f"sleep {time.perf_counter() - t:.1f} s (budget {cfg['sleep']['seconds']} s)")
        print(json.dumps({"phases": {k: round(v, 1) for k, v in rep["phases"].items()},
                          "counts": rep["counts"], "consolidation": rep.get("consolidation"),
                          "refresh_rounds": rep.get("refresh_rounds"),
                          "skipped_for_time": rep["skipped_for_time"]}, indent=1))
        for e in rep.get("rehearsed", []):
            if e["before"] < e["of"]:
                print(f"  rehearsed {e['id']} {facts[e['id']].object}: {e['before']} → "
                      f"{e['after']} of {e['of']} wordings, kept {e['kept']}"
                      + (f" ({e['error']})" if "error" in e else ""))
        if score:
            score("after sleep")


def _scorer(model, tok, cfg, facts_file, n, base_file):
    facts = evaluate.load_facts(facts_file, n)
    items, base, ppl0 = evaluate.baseline(model, tok, facts, cfg["system_prompt"], base_file)

    last = {}

    def score(tag):
        after = evaluate.run_probes(model, tok, items, facts)
        agg, per = evaluate.score(facts, base, after, tok, [f["object"] for f in facts])
        for f, p, q in zip(facts, per, last.get("per", per)):
            moved = {k: (q[k], p[k]) for k in ("raw", "chat", "para") if p[k] != q[k]}
            if moved:
                print(f"  {f['id']} {f['object']}: {moved}")
        last["per"] = per
        keys = ("raw_recall", "chat_recall", "paraphrase_recall", "neighbors_unchanged",
                "general_unchanged")
        drift = probes.perplexity(model, tok) / ppl0 - 1
        print(tag, {k: round(agg[k], 3) for k in keys}, f"ppl drift {drift:+.1%}")
        print("  chat recall per 20 facts",
              [round(sum(p["chat"] for p in per[i:i + 20]) / len(per[i:i + 20]), 2)
               for i in range(0, len(per), 20)], flush=True)
    return score


if __name__ == "__main__":
    main()
