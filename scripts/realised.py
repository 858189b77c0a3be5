"""How much of the wanted shift a wake edit realises at each of its training prompts.

    .venv/bin/python scripts/realised.py d004,d007 [editor_key=value ...]

For each dev fact (ids from ../shared/eval/dev_facts.jsonl) written into a fresh memory: per
training prompt (the bare statement cue, the cue after each random prefix, the chat questions),
the position of its key, the share of the wanted layer-L shift (z − h_L) the edited weights
realise there, the object's teacher-forced NLL there after the edit, ρ at the first edited layer (kᵀC⁻¹k̄ / k̄ᵀC⁻¹k̄: the share a one-key solve at the
mean key k̄ gives this key), and the key's gain kᵀC⁻¹k / d (1 = a typical key of ordinary text).
docs/editing.md, fifteenth round.
"""
import json
import sys
import tempfile
from pathlib import Path

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
import mlx.core as mx
import mlx.nn as nn
import numpy as np

from sleepllm import config, editor, memit, memory
from sleepllm import model as models
from sleepllm.extract import extract

DEV = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev_facts.jsonl"


def nll(model, p):
    lp = nn.log_softmax(model(mx.array([p.ids]))[0].astype(mx.float32), axis=-1)
    return float(np.mean([-lp[t - 1, p.ids[t]].item() for t in range(p.target_start, len(p.ids))]))


def residuals(model, prompts, layers):
    """(h_L, {layer: key}) at each prompt's first key position, one prompt at a time."""
    out = []
    for p in prompts:
        with memit.taps(model, key_layers=layers, resid_layer=layers[-1]) as tp:
            model(mx.array([p.ids]))
            t = p.keys[0][1]
            h = np.array(tp["resid"].seen[0].astype(mx.float32))[t]
            ks = {l: np.array(tp["keys"][l].seen[0].astype(mx.float32))[t] for l in layers}
        out.append((h, ks))
    return out


def main():
    ids = sys.argv[1].split(",")
    cfg = config.load_config(None, config.parse_overrides(sys.argv[2:]))
    model, tok, mid = models.load(cfg["model"])
    mem = memory.Memory(tempfile.mkdtemp(), model, tok, cfg, mid)
    ed = mem.editor
    layers = ed.hp.layers
    C_inv = np.linalg.inv(ed.cov[layers[0]])
    dev = {d["id"]: d for d in map(json.loads, DEV.open())}
    for i in ids:
        statement = dev[i]["statement"]
        fact = extract(statement)[0]
        prompts, _ = editor.render(fact, tok, ed.prefixes, cfg["system_prompt"], ed.hp.questions)
        before = residuals(model, prompts, layers)
        mid_, _ = mem.learn(fact, statement)
        e = ed.edits[mid_]
        after = residuals(model, prompts, layers)
        print(f"{i} {statement!r}")
        for p, (hb, kb), (ha, _) in zip(prompts, before, after):
            a = p.keys[0][0]
            want = e.z[a] - hb
            k_mean = e.keys[layers[0]].astype(np.float64)[a]
            k = kb[layers[0]]
            rho = k_mean @ C_inv @ k / (k_mean @ C_inv @ k_mean)
            print(f"  key at token {p.keys[0][1]:3d}  realised {(ha - hb) @ want / (want @ want):5.2f}"
                  f"  NLL {nll(model, p):5.2f}  rho {rho:5.2f}  gain {k @ C_inv @ k / len(k):5.2f}")


if __name__ == "__main__":
    main()
