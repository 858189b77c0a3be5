"""Shared fixtures. Every test runs against a temporary SLEEPLLM_HOME, never the real one.

The real default model is read (never written) from the data directory that scripts/setup
filled; integration tests are skipped with a clear reason if it is missing.
"""
import json
import os
from pathlib import Path

import pytest

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
from sleepllm.gguf import MODEL_NAME

_REAL_HOME = None
_MADE_CACHE = None   # the statistics cache folder this run created (removed at its end)


def _real_data_dir() -> Path:
    from sleepllm.config import data_dir

    return data_dir()


@pytest.fixture(scope="session")
def default_model_path() -> str:
    path = _REAL_HOME / "models" / MODEL_NAME
    if not (path / "config.json").exists():
        pytest.skip("default model not converted yet: run scripts/setup")
    return str(path)


def pytest_configure(config):
    """Remember the real data dir (to read the converted default model), then point the
    per-model statistics cache at one temporary folder for the whole run (subprocesses
    inherit it), so they are computed once per run and never written to the real one."""
    global _REAL_HOME, _MADE_CACHE
    import tempfile

    _REAL_HOME = _real_data_dir()
    if not os.environ.get("SLEEPLLM_TEST_CACHE"):
        _MADE_CACHE = tempfile.mkdtemp(prefix="sleepllm-test-cache-")
        os.environ["SLEEPLLM_TEST_CACHE"] = _MADE_CACHE
    os.environ["SLEEPLLM_CACHE"] = os.environ["SLEEPLLM_TEST_CACHE"]


def pytest_unconfigure(config):
    """The run's statistics cache (~50 MB for the default model) goes with the run; a folder
    given in SLEEPLLM_TEST_CACHE is the caller's and stays."""
    import shutil

    if _MADE_CACHE:
        shutil.rmtree(_MADE_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _temp_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SLEEPLLM_HOME", str(home))
    yield home


@pytest.fixture(scope="session")
def default_model(default_model_path):
    from mlx_lm import load

    model, tok = load(default_model_path)
    return model, tok


# ---------------------------------------------------------------- tiny random Llama

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
          "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")


def make_tiny_model_dir(path: Path, hidden=64, layers=4, intermediate=128, seed=0, scale=1.0) -> Path:
    """A random Llama folder loadable by mlx_lm.load: byte-level BPE tokenizer + ChatML."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    path.mkdir(parents=True, exist_ok=True)
    alphabet = ByteLevel.alphabet()
    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHATML,
        "eos_token": "<|im_end|>", "bos_token": "<|endoftext|>", "add_bos_token": False}))
    config = {"model_type": "llama", "hidden_size": hidden, "num_hidden_layers": layers,
              "intermediate_size": intermediate, "num_attention_heads": 4,
              "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "vocab_size": len(vocab),
              "tie_word_embeddings": True, "max_position_embeddings": 512,
              "eos_token_id": 2}
    (path / "config.json").write_text(json.dumps(config))
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    if scale != 1.0:
        model.update(tree_map_scale(model.parameters(), scale))
    mx.save_safetensors(str(path / "model.safetensors"), dict(tree_flatten(model.parameters())))
    return path


def quantize_model_dir(src: Path, dst: Path, bits=4, group_size=32, per_layer=None) -> Path:
    """A copy of a tiny model folder quantized as mlx-community models are (embedding and every
    linear layer, `bits`/`group_size`; `per_layer` {module path: {"bits", "group_size"}} as
    mixed-precision conversions write into config.json)."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm import load

    per_layer = per_layer or {}
    model, _ = load(str(src))
    nn.quantize(model, group_size=group_size, bits=bits,
                class_predicate=lambda p, m: per_layer.get(p, hasattr(m, "to_quantized")))
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    config = json.loads((src / "config.json").read_text())
    config["quantization"] = {"group_size": group_size, "bits": bits, **per_layer}
    (dst / "config.json").write_text(json.dumps(config))
    mx.save_safetensors(str(dst / "model.safetensors"), dict(tree_flatten(model.parameters())))
    return dst


def tree_map_scale(params, s):
    from mlx.utils import tree_map

    return tree_map(lambda w: w * s if w.ndim == 2 else w, params)


@pytest.fixture
def tiny_model_dir(tmp_path) -> Path:
    return make_tiny_model_dir(tmp_path / "tiny")


@pytest.fixture
def tiny(tiny_model_dir):
    from mlx_lm import load

    model, tok = load(str(tiny_model_dir))
    return model, tok
