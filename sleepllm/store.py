"""On-disk format. Everything is safetensors, JSON or YAML; every write is atomic
(temp file in the same folder, fsync, rename, fsync of the folder); files are 0600.

Memory folder layout:

    journal.jsonl                 wake journal: one JSON line per learned / forgotten fact
    checkpoints/ckpt-<n>/         one consolidated state
        edits.safetensors         per edit and layer: A (d_out×r), B (d_k×r), K (r×d_k), fp16
        ledger.json               facts: id, text, triple, status, history, audits
    manifest.json                 points at the current checkpoint (written last)

Cache (per model, under <data dir>/cache/<fingerprint>/): prefixes.json, cov_l*.safetensors.
"""
import json
import os
import tempfile
from pathlib import Path

import mlx.core as mx
import numpy as np


def _fsync_dir(folder: Path):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj):
    atomic_write_bytes(path, json.dumps(obj, indent=1, ensure_ascii=False).encode())


def atomic_save_arrays(path: Path, arrays: dict, metadata: dict | None = None):
    """numpy arrays -> safetensors, atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".safetensors")
    os.close(fd)
    try:
        mx.save_safetensors(tmp, {k: mx.array(v) for k, v in arrays.items()},
                            metadata=metadata or {})
        os.chmod(tmp, 0o600)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def load_arrays(path: Path) -> dict:
    """safetensors -> {name: numpy array}."""
    return {k: np.array(v) for k, v in mx.load(str(path)).items()}
