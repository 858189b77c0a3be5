"""Does an exported folder remember without sleepllm? For every memory of a folder, its raw
statement cue is completed (greedy, 16 tokens) by sleepllm (model + memory) and by a child
process that imports only mlx_lm and loads `sleepllm export`'s folder. Reports the share of
the cues sleepllm answers that the plain mlx_lm model answers too.

    .venv/bin/python scripts/export_check.py --memory DIR [--model default] [--json OUT]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import sleepllm  # noqa: F401  (fast BLAS before mlx)

PLAIN = """
import json, sys
from mlx_lm import load, generate
from mlx_lm.sample_utils import make_sampler
folder, cues = sys.argv[1], json.loads(sys.argv[2])
model, tok = load(folder)
print(json.dumps([generate(model, tok, c, max_tokens=16, sampler=make_sampler(temp=0.0))
                  for c in cues]))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memory", required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--json")
    a = ap.parse_args()
    from sleepllm import model as models
    from sleepllm import probes, relations
    from sleepllm.config import load_config
    from sleepllm.memory import Memory

    cfg = load_config(None, {"model": a.model})
    model, tok, _ = models.load(cfg["model"])
    mem = Memory(Path(a.memory), model, tok, cfg, a.model)
    facts = list(mem.active().values())
    cues = [relations.cues(f)[0] for f in facts]
    ours = probes.generate(model, tok, [probes.raw_ids(tok, c) for c in cues], max_tokens=16)
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "sleepllm", "export", "--model", a.model,
                        "--memory", a.memory, "--out", out], check=True)
        # the child imports no sleepllm code; it gets the system OpenBLAS by LD_PRELOAD (as a
        # user on Linux would) instead of MLX's reference BLAS, which would only be slower
        from sleepllm.blas import _loaded
        env = dict(os.environ, LD_PRELOAD=":".join(_loaded)) if _loaded else None
        r = subprocess.run([sys.executable, "-c", PLAIN, out, json.dumps(cues)],
                           capture_output=True, text=True, check=True, env=env)
        plain = json.loads(r.stdout.strip().splitlines()[-1])
    rows = [{"cue": c, "object": f.object, "sleepllm": probes.hit(f.object, o),
             "mlx_lm": probes.hit(f.object, p), "sleepllm_text": o, "mlx_lm_text": p}
            for f, c, o, p in zip(facts, cues, ours, plain)]
    answered = [r for r in rows if r["sleepllm"]]
    both = sum(r["mlx_lm"] for r in answered)
    report = {"facts": len(rows), "sleepllm_answers": len(answered),
              "exported_answers_of_those": both,
              "share": both / max(1, len(answered)), "rows": rows}
    print(f"{len(rows)} memories; sleepllm answers {len(answered)} raw cues; the exported "
          f"folder under plain mlx_lm answers {both} of those ({report['share']:.0%})")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
