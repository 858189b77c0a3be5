"""`sleepllm bench`: numbers measured side by side in one run on this machine.

- generation tokens/s: sleepllm's chat path vs `mlx_lm.generate` on the same model and prompt;
- forward tokens/s with sleepllm's SwiGLU (cpu_ops) vs MLX's, toggled in this process;
- fp32 matmul GFLOP/s and generation tokens/s with the fast BLAS vs MLX's bundled reference
  BLAS (the latter in a child process started with SLEEPLLM_REFERENCE_BLAS=1);
- with --memory DIR (a folder filled by `sleepllm eval --via chat --memory DIR`): cold start
  (model only) and start with that checkpoint, each in a new process; checkpoint bytes per
  fact; wake-edit latency per fact as the memory grew (from the ledger's history); the sleep
  phase times recorded in the ledger's audits are in the eval report instead.
"""
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

PROMPT = "Write a short paragraph about the history of bread."


def matmul_gflops(n=1024, reps=10) -> float:
    import mlx.core as mx

    a, b = mx.random.normal((n, n)), mx.random.normal((n, n))
    mx.eval(a @ b)
    t = time.perf_counter()
    for _ in range(reps):
        mx.eval(a @ b)
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def gen_tps(model, tokenizer, tokens=100, reps=5, no_repeat_ngram=0) -> dict:
    """Median generation tokens/s: sleepllm.chat.generate (with the chat's no-repeat rule, as
    the REPL replies) vs mlx_lm.stream_generate.

    Interleaved, and the order alternates each rep, so both see the same machine state."""
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    from sleepllm import chat

    prompt = chat.render(tokenizer, [{"role": "user", "content": PROMPT}])

    def ours():
        return list(chat.generate(model, tokenizer, prompt, tokens, 0.0,
                                  no_repeat_ngram))[-1].generation_tps

    def ref():
        return list(stream_generate(model, tokenizer, prompt, max_tokens=tokens,
                                    sampler=make_sampler(temp=0.0)))[-1].generation_tps

    a, b = [], []
    for k in range(reps):
        first, second = (ours, ref) if k % 2 == 0 else (ref, ours)
        x, y = first(), second()
        a.append(x if first is ours else y)
        b.append(y if first is ours else x)
    return {"sleepllm_tps": statistics.median(a), "mlx_lm_tps": statistics.median(b),
            "ratio": statistics.median(a) / statistics.median(b), "tokens": tokens, "reps": reps,
            "no_repeat_ngram": no_repeat_ngram}


def swiglu_ratio(model, tokenizer, reps=5) -> dict:
    """Forward-pass tokens/s with sleepllm's SwiGLU (cpu_ops) against MLX's, interleaved in
    this process: a batch of 32 prompts of 30 tokens (an audit's or a v* search's shape) and
    one prompt of 300 tokens (a chat turn's prefill); also greedy generation tokens/s."""
    import mlx.core as mx

    from sleepllm import cpu_ops

    def forward(b, t):
        x = mx.array([[(7 * i + j) % 1000 + 100 for i in range(t)] for j in range(b)])
        mx.eval(model.model(x))
        t0 = time.perf_counter()
        mx.eval(model.model(x))
        return b * t / (time.perf_counter() - t0)

    def measure():
        return {"batch_32x30_tps": forward(32, 30), "prompt_300_tps": forward(1, 300),
                "gen_tps": gen_tps(model, tokenizer, reps=1)["sleepllm_tps"]}

    was = cpu_ops.active(model)
    runs = {True: [], False: []}
    try:
        for k in range(reps):
            for on in ((True, False) if k % 2 == 0 else (False, True)):
                cpu_ops.install(model, on)
                runs[on].append(measure())
    finally:
        cpu_ops.install(model, was)
    med = {on: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
           for on, rs in runs.items()}
    return {"sleepllm": med[True], "mlx": med[False], "used": cpu_ops.wanted(),
            "ratio": {key: med[True][key] / med[False][key] for key in med[True]}, "reps": reps}


def blas_probe(model_path: str) -> dict:
    """Run in a child process: BLAS name, matmul GFLOP/s, generation tokens/s."""
    from mlx_lm import load

    from sleepllm.blas import blas_in_use

    model, tok = load(model_path)
    g = gen_tps(model, tok, reps=1)
    return {"blas": blas_in_use(), "matmul_gflops": matmul_gflops(), "gen_tps": g["sleepllm_tps"]}


def _child(model_path, reference: bool) -> dict:
    env = dict(os.environ, SLEEPLLM_REFERENCE_BLAS="1" if reference else "0")
    code = ("import json, sleepllm.bench as b; "
            f"print(json.dumps(b.blas_probe({model_path!r})))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def quantized_tps(model_path: str, tokenizer) -> float:
    """Generation tokens/s of the same model quantized to 4 bits (group 32), as shipped."""
    import mlx.nn as nn
    from mlx_lm import load

    q, _ = load(model_path)
    nn.quantize(q, group_size=32, bits=4)
    return gen_tps(q, tokenizer, reps=1)["sleepllm_tps"]


def startup_probe(model_spec: str, memory: str | None) -> dict:
    """Run in a new process: seconds to load the model, then to load the memory on top."""
    t0 = time.perf_counter()
    from sleepllm import model as models
    from sleepllm.config import load_config
    from sleepllm.memory import Memory

    cfg = load_config(None, {"model": model_spec})
    model, tok, _ = models.load(cfg["model"])
    t1 = time.perf_counter()
    out = {"model_seconds": t1 - t0}
    if memory:
        from pathlib import Path

        mem = Memory(Path(memory), model, tok, cfg, model_spec)
        out.update({"memory_seconds": time.perf_counter() - t1, "facts": len(mem.records)})
    return out


def memory_report(model_spec: str, memory) -> dict:
    """Start-up times (new processes), checkpoint bytes per fact, wake latency vs memory size."""
    from pathlib import Path

    from sleepllm import store

    def child(mem):
        code = ("import json, sys, sleepllm.bench as b; "
                "print(json.dumps(b.startup_probe(*json.loads(sys.argv[1]))))")
        out = subprocess.run([sys.executable, "-c", code, json.dumps([model_spec, mem])],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    cold, warm = child(None), child(str(memory))
    folder = Path(memory)
    current = store.read_manifest(folder).get("current")
    ledger = json.loads((folder / "checkpoints" / current / "ledger.json").read_text())
    size = sum(f.stat().st_size for f in (folder / "checkpoints" / current).iterdir())
    lat = [h["edit_seconds"] for r in ledger for h in r["history"][:1] if "edit_seconds" in h]
    quarters = [lat[i * len(lat) // 4:(i + 1) * len(lat) // 4] for i in range(4)]
    return {
        "cold_start_seconds": cold["model_seconds"],
        "start_with_checkpoint_seconds": warm["model_seconds"] + warm["memory_seconds"],
        "checkpoint_load_seconds": warm["memory_seconds"], "facts": warm["facts"],
        "checkpoint_bytes": size, "checkpoint_bytes_per_fact": size / max(1, len(ledger)),
        "wake_edit_seconds_by_quarter": [
            {"facts_before": i * len(lat) // 4, "median": statistics.median(q),
             "p90": sorted(q)[int(0.9 * (len(q) - 1))]} for i, q in enumerate(quarters) if q],
    }


def run(model_path: str, model, tokenizer, model_spec: str = "default", memory=None,
        no_repeat_ngram=0) -> dict:
    import mlx.core as mx
    import mlx_lm

    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
                         f"{platform.release()}",
              "mlx": mx.__version__, "mlx_lm": mlx_lm.__version__, "model": model_path}
    report["generation"] = gen_tps(model, tokenizer, no_repeat_ngram=no_repeat_ngram)
    report["weights"] = {"as_loaded_tps": report["generation"]["sleepllm_tps"],
                         "q4_tps": quantized_tps(model_path, tokenizer)}
    report["swiglu"] = swiglu_ratio(model, tokenizer)
    fast, slow = _child(model_path, False), _child(model_path, True)
    report["blas"] = {"fast": fast, "reference": slow,
                      "matmul_ratio": fast["matmul_gflops"] / slow["matmul_gflops"],
                      "gen_tps_ratio": fast["gen_tps"] / slow["gen_tps"]}
    if memory:
        report["memory"] = memory_report(model_spec, memory)
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report
