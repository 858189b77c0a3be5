"""Loading a model: the embedded default or any mlx-lm model (Hugging Face repo id or folder)."""
import hashlib
import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from sleepllm.config import data_dir
from sleepllm.gguf import ensure_default_model


def resolve(spec: str, console=None) -> str:
    """'default' -> the converted embedded model's folder; anything else as mlx-lm takes it."""
    if spec in (None, "", "default"):
        return str(ensure_default_model(data_dir(), console))
    return spec


def load(spec: str, console=None):
    """(model, tokenizer, path) via mlx_lm.load; on an x86 CPU its SwiGLU uses sleepllm's
    vectorised exp (cpu_ops)."""
    from mlx_lm import load as mlx_load

    from sleepllm import cpu_ops

    path = resolve(spec, console)
    model, tokenizer = mlx_load(path)
    cpu_ops.install(model)
    return model, tokenizer, path


def fingerprint(model) -> str:
    """A short id of the base weights: shapes, dtypes and a strided sample of every tensor.

    Cheap (no full hash of hundreds of MB) yet different for any other model or quantization.
    """
    h = hashlib.sha256()
    for name, w in sorted(tree_flatten(model.parameters()), key=lambda kv: kv[0]):
        h.update(f"{name}:{tuple(w.shape)}:{w.dtype}".encode())
        flat = w.reshape(-1)
        step = max(1, flat.size // 257)
        h.update(memoryview(_np(flat[::step][:257])).tobytes())
    return h.hexdigest()[:16]


def _np(a):
    import numpy as np

    if a.dtype == mx.bfloat16:
        a = a.astype(mx.float32)
    return np.array(a)


def context_window(path: str, model=None) -> int:
    cfg_file = Path(path) / "config.json"
    if cfg_file.exists():
        cfg = json.loads(cfg_file.read_text())
        for key in ("max_position_embeddings", "max_seq_len", "n_ctx"):
            if key in cfg:
                return int(cfg[key])
    args = getattr(model, "args", None)
    return int(getattr(args, "max_position_embeddings", 0) or 4096)
