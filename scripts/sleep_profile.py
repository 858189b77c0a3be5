"""Sleep a copy of a memory folder, optionally cut to its first N memories (the rest
forgotten: reverted exactly), with a given `sleep.seconds`, and print where the time went:
the audit's teacher-forced pass and how many probes it settled, then sleep's phases and
decisions. The original folder is not touched.

    .venv/bin/python scripts/sleep_profile.py MEMORY_DIR [N] [SECONDS]
"""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
from rich.console import Console

from sleepllm import model as models
from sleepllm import probes, sleep
from sleepllm.config import load_config
from sleepllm.memory import Memory


def main():
    src = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else None
    over = {"sleep.seconds": float(sys.argv[3])} if len(sys.argv) > 3 else {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "memory"
        shutil.copytree(src, folder)
        cfg = load_config(None, over)
        model, tok, _ = models.load(cfg["model"])
        mem = Memory(folder, model, tok, cfg, cfg["model"], Console(stderr=True))
        for fid in list(mem.records)[n:] if n else []:
            mem.forget(fid)
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


if __name__ == "__main__":
    main()
