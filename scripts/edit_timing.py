"""Time wake edits one after the other in a fresh memory, as wake does: seconds per edit,
Adam steps of the v* search, seconds per step and the final NLL (docs/editing.md, seventh
round).

    .venv/bin/python scripts/edit_timing.py 8                      # dev facts d000-d007
    .venv/bin/python scripts/edit_timing.py 48,59,70,74,81 [editor_key=value ...]
"""
import sys
import tempfile
import time
from pathlib import Path

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
from sleepllm import config, evaluate, memit, memory
from sleepllm import model as models
from sleepllm.extract import extract

DEV = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev_facts.jsonl"


def main():
    cfg = config.load_config(None, config.parse_overrides(sys.argv[2:]))
    model, tok, mid = models.load(cfg["model"])
    mem = memory.Memory(tempfile.mkdtemp(), model, tok, cfg, mid)
    mem.editor.load_stats()   # covariance (and C⁻¹) loaded or computed before the clock starts
    facts = evaluate.load_facts(DEV)
    pick = sys.argv[1]
    facts = [facts[int(i)] for i in pick.split(",")] if "," in pick else facts[: int(pick)]

    search, info = memit.compute_delta, {}

    def timed(*args, **kw):
        ts, t0 = [], time.perf_counter()
        out = search(*args, **kw, log=lambda *_: ts.append(time.perf_counter()))
        info.update(steps=len(ts), rows=len(args[1]),
                    step=(ts[-1] - ts[0]) / max(1, len(ts) - 1), search=time.perf_counter() - t0)
        return out

    memit.compute_delta = timed
    total = 0.0
    for f in facts:
        t = time.perf_counter()
        fid, _ = mem.learn(extract(f["statement"])[0], f["statement"])
        dt = time.perf_counter() - t
        total += dt
        print(f"{dt:6.1f} s  v* {info['search']:5.1f} s  steps {info['steps']:2d}  rows "
              f"{info['rows']:2d}  s/step {info['step']:.2f}  NLL "
              f"{mem.editor.edits[fid].nll:.3f}  {f['statement']}", flush=True)
    print(f"total {total:.1f} s")


if __name__ == "__main__":
    main()
