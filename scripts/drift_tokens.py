"""Where a memory folder's perplexity drift comes from: the held-out text's tokens whose
loss rose most between the base model and the model with every memory in its weights, with
the words before them (docs/editing.md, tenth round).

    .venv/bin/python scripts/drift_tokens.py MEMORY_DIR [TOP]
"""
import math
import sys

import numpy as np

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
from sleepllm import config, memory, probes
from sleepllm import model as models


def main():
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    cfg = config.load_config(None, {})
    model, tok, mid = models.load(cfg["model"])
    ed = memory.Memory(sys.argv[1], model, tok, cfg, mid).editor
    ids = tok.encode(probes.HELDOUT.read_text())
    edited = probes.token_losses(model, tok)
    ed.revert_all(list(ed.edits))
    base = probes.token_losses(model, tok)
    d = edited - base
    print(f"perplexity {math.exp(base.mean()):.2f} -> {math.exp(edited.mean()):.2f} "
          f"({100 * (math.exp(d.mean()) - 1):+.1f} %), {len(d)} tokens; net rise {d.sum():.1f} "
          f"nats (rises {d[d > 0].sum():.1f}, falls {d[d < 0].sum():.1f})")
    order = np.argsort(-d)
    print(f"the {top} largest rises carry {d[order[:top]].sum() / d.sum():.0%} of the net rise:")
    for j in order[:top]:
        print(f"  {d[j]:+.2f}  …{tok.decode(ids[max(0, j - 6): j + 1])!r} → "
              f"{tok.decode([ids[j + 1]])!r}")


if __name__ == "__main__":
    main()
