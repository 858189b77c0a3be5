"""How far each memory's keys and layer-L output have moved since its edit was written:
for every edit of a memory folder, the relative change of its keys at each edited layer
(stored vs read from the current weights) and how much of its wanted shift z − h_L(base) the
current weights realise (rho: projection onto it; resid: what is left, relative to it).
docs/editing.md, ninth round.

    .venv/bin/python scripts/key_drift.py MEMORY_DIR
"""
import sys

import numpy as np

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
from sleepllm import config, memit, memory
from sleepllm import model as models
from sleepllm.editor import render


def main():
    cfg = config.load_config(None, {})
    model, tok, mid = models.load(cfg["model"])
    ed = memory.Memory(sys.argv[1], model, tok, cfg, mid).editor
    L = ed.hp.layers[-1]
    now = {}
    for fid, e in ed.edits.items():
        prompts, anchors = render(e.fact, tok, ed.prefixes, ed.system_prompt, ed.hp.questions)
        cut = [memit._cut(p) for p in prompts]
        keys, h = memit.read(model, cut, len(anchors), key_layers=ed.hp.layers, resid_layer=L)
        now[fid] = (cut, len(anchors), keys, h)
    edits = {e.id: e for e in ed.revert_all(list(ed.edits))}   # the unedited model, for h_L(base)
    print("id     rho  resid  key drift per layer " + " ".join(map(str, ed.hp.layers)))
    for fid, (cut, n, keys, h) in now.items():
        e = edits[fid]
        if e.z is None or len(e.z) != n:
            continue
        _, hb = memit.read(model, cut, n, resid_layer=L)
        want, got = e.z.astype(np.float64) - hb, h - hb
        rho = (got * want).sum() / (want * want).sum()
        resid = np.linalg.norm(want - got) / np.linalg.norm(want)
        drift = [np.linalg.norm(keys[l] - e.keys[l].astype(np.float64))
                 / np.linalg.norm(e.keys[l].astype(np.float64)) for l in ed.hp.layers]
        print(f"{fid}  {rho:5.2f} {resid:5.2f}  " + " ".join(f"{x:.3f}" for x in drift)
              + f"   {e.fact.subject} {e.fact.relation} {e.fact.object}")


if __name__ == "__main__":
    main()
