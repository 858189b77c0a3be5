"""Configuration and the data directory.

Precedence: built-in `configs/default.yaml` < `--config FILE` < command-line flags.
Data directory: $SLEEPLLM_HOME, else $XDG_DATA_HOME/sleepllm (Linux) or
~/Library/Application Support/sleepllm (macOS). Folders are 0700, files 0600.
"""
import copy
import os
import sys
from pathlib import Path

import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


def data_dir() -> Path:
    if os.environ.get("SLEEPLLM_HOME"):
        d = Path(os.environ["SLEEPLLM_HOME"]).expanduser()
    elif sys.platform == "darwin":
        d = Path.home() / "Library" / "Application Support" / "sleepllm"
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        d = Path(xdg) / "sleepllm"
    return private_dir(d)


def cache_dir() -> Path:
    """Per-model statistics (not personal data): $SLEEPLLM_CACHE, else <data dir>/cache."""
    if os.environ.get("SLEEPLLM_CACHE"):
        return private_dir(Path(os.environ["SLEEPLLM_CACHE"]).expanduser())
    return private_dir(data_dir() / "cache")


def private_dir(path: Path) -> Path:
    """mkdir -p with mode 0700 on every folder we create (and on the leaf)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _merge(base: dict, over: dict, where: str = "") -> dict:
    for k, v in over.items():
        if k not in base:
            raise ValueError(f"unknown config key '{where}{k}' (see configs/default.yaml)")
        if isinstance(base[k], dict) and isinstance(v, dict):
            _merge(base[k], v, f"{where}{k}.")
        else:
            base[k] = v
    return base


def load_config(path: str | os.PathLike | None = None, overrides: dict | None = None) -> dict:
    """Default config, overlaid with the YAML file at `path`, then with `overrides`."""
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    if path:
        user = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(user, dict):
            raise ValueError(f"{path}: expected a mapping of config keys")
        _merge(cfg, user)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = cfg
        *parents, leaf = dotted.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise ValueError(f"unknown config section '{p}' in '{dotted}'")
            node = node[p]
        if leaf not in node:
            raise ValueError(f"unknown config key '{dotted}'")
        node[leaf] = value
    return copy.deepcopy(cfg)


def parse_overrides(pairs, section: str | None = "editor") -> dict:
    """["lam=1500", "contrast=0"] -> {"editor.lam": 1500, "editor.contrast": 0}: key=value
    pairs of one config section, each value read as YAML (numbers stay numbers); with
    section None the keys stay bare ({"lam": 1500, ...})."""
    out = {}
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {kv!r}")
        out[f"{section}.{key}" if section else key] = yaml.safe_load(value)
    return out


def memory_dir(cfg: dict, explicit: str | None = None) -> Path:
    """The memory folder: --memory DIR, else <data dir>/memories/<config memory name>."""
    if explicit:
        return private_dir(Path(explicit).expanduser())
    return private_dir(data_dir() / "memories" / cfg["memory"])
