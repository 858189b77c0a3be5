"""Where a misspelt memory is damaged.

    .venv/bin/python scripts/where.py MEMORY_DIR [PROMPT]

On a copy of the memory folder: for every memory whose prompt (PROMPT: index into the
editor's rendered prompts, 0 = the bare statement cue) begins the object right and then
misspells it (teacher-forced: every object token must be the argmax), the residual after the
last edited layer is set, at some positions only, to what it was when the fact was written
(every later edit reverted), and the spelling checked again. Positions: the anchors, the
tokens between anchor and object, the object's own tokens, all, all but the anchors.
Prints one line per memory and the counts (docs/editing.md, eighteenth round)."""
import collections
import shutil
import sys
import tempfile
from pathlib import Path

import sleepllm  # noqa: F401  (before mlx: the BLAS)
import mlx.core as mx
import numpy as np

from sleepllm import memit
from sleepllm.config import load_config
from sleepllm.editor import render
from sleepllm.memory import Memory
from sleepllm.model import load


def spelt(model, L, p, patch=None):
    """(object tokens right, one bool each; residual after layer L) for prompt p; `patch`
    (T, d) is added to layer L's MLP output, i.e. to that residual."""
    T = len(p.ids)
    with memit.taps(model, delta_layer=L, resid_layer=L) as t:
        if patch is not None:
            t["delta"].delta = mx.array(patch[None].astype(np.float32))
            t["delta"].mask = mx.ones((1, T))
        logits = model(mx.array([p.ids]))
        h = np.array(t["resid"].seen[0].astype(mx.float32))
    got = np.array(mx.argmax(logits[0], axis=-1))[p.target_start - 1: T - 1]
    return (got == np.array(p.ids[p.target_start:])).tolist(), h


def main(src, which=0):
    tmp = Path(tempfile.mkdtemp()) / "m"
    shutil.copytree(src, tmp)
    cfg = load_config(None)
    model, tok, mid = load(cfg["model"])
    ed = Memory(tmp, model, tok, cfg, mid).editor
    L = ed.hp.layers[-1]
    order = list(ed.edits)
    res, n = collections.Counter(), 0
    for idx, i in enumerate(order):
        e = ed.edits[i]
        p = render(e.fact, tok, ed.prefixes, cfg["system_prompt"], ed.hp.questions)[0][which]
        ok, h_now = spelt(model, L, p)
        if not ok[0] or all(ok):
            continue
        gone = ed.revert_all(order[idx + 1:])           # the weights when it was written
        ok_then, h_then = spelt(model, L, p)
        ed.add(*gone)
        T, anc = len(p.ids), {t for _, t in p.keys}
        sets = {"anchor": anc, "between": set(range(max(anc) + 1, p.target_start)),
                "object": set(range(p.target_start, T)), "all": set(range(T)),
                "not-anchor": set(range(T)) - anc}
        n += 1
        out = [e.fact.object, "write-time", all(ok_then)]
        res["write-time"] += all(ok_then)
        for name, S in sets.items():
            patch = np.zeros_like(h_now)
            for t in S:
                patch[t] = h_then[t] - h_now[t]
            fixed = all(spelt(model, L, p, patch)[0])
            res[name] += fixed
            out += [name, fixed]
        print(*out, flush=True)
    print(n, "misspelt; spelt right:", dict(res))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
