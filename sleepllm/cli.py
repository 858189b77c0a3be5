"""Command line: each sub-command maps to one function."""
import argparse
import atexit
import sys
from pathlib import Path

from sleepllm import __version__


def _versions() -> str:
    import mlx.core as mx
    import mlx_lm

    from sleepllm import cpu_ops
    from sleepllm.blas import blas_in_use

    act = ("sleepllm's vectorised exp (MLX's CPU exp is scalar here)" if cpu_ops.wanted()
           else "MLX's")
    return (f"sleepllm {__version__}\nmlx {mx.__version__}\nmlx-lm {mlx_lm.__version__}\n"
            f"device {mx.default_device()}\nBLAS {blas_in_use()}\nSwiGLU {act}")


def _common(p):
    p.add_argument("--config", help="YAML file overriding configs/default.yaml")
    p.add_argument("--model", help="'default', a Hugging Face repo id or a local mlx-lm folder")
    p.add_argument("--memory", help="memory folder (default: inside the data directory)")


def _load_cfg(args, **extra):
    from sleepllm.config import load_config

    return load_config(args.config, {"model": args.model, **extra})


def cmd_chat(args) -> int:
    from rich.console import Console

    from sleepllm import model as models
    from sleepllm.config import data_dir
    from sleepllm.repl import Session, run_script, run_tty

    cfg = _load_cfg(args, temp=args.temp, max_tokens=args.max_tokens,
                    max_context=args.max_context, system_prompt=args.system)
    console = Console(stderr=True)
    model, tokenizer, path, mem = _open_memory(args, cfg, console, learn_noted=False)
    mem.editor.load_stats()   # here, with its progress bar: not on the Learner's thread
    session = Session(model, tokenizer, path, cfg, models.context_window(path, model), mem)
    if sys.stdin.isatty():
        return run_tty(session, console, data_dir() / "history")
    return run_script(session, sys.stdin, console)


def _open_memory(args, cfg, console, folder=None, learn_noted=True):
    """Load the model and the memory folder (checkpoint + journal) into its weights; facts
    noted but not learned yet (a quit mid-edit) are learned now unless `learn_noted` is off
    (the chat learns them in the background)."""
    from sleepllm import model as models
    from sleepllm.config import memory_dir
    from sleepllm.memory import Memory

    model, tokenizer, path = models.load(cfg["model"], console)
    mem = Memory(folder or memory_dir(cfg, args.memory), model, tokenizer, cfg,
                 cfg["model"] if cfg["model"] != "default" else "default", console)
    for w in mem.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    if learn_noted:
        mem.learn_noted(console)
    return model, tokenizer, path, mem


def cmd_eval(args) -> int:
    import json
    import tempfile

    from rich.console import Console
    from rich.progress import Progress

    from sleepllm import evaluate

    cfg = _load_cfg(args)
    console = Console(stderr=True)
    facts = evaluate.load_facts(args.facts, args.n)
    with tempfile.TemporaryDirectory(prefix="sleepllm-eval-") as tmp:
        folder = args.memory or tmp
        model, tokenizer, path, mem = _open_memory(args, cfg, console, folder)
        if mem.records:
            console.print(f"[red]memory folder {folder} is not empty; eval needs a fresh one[/red]")
            return 2
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"telling facts (--via {args.via})", total=len(facts))
            tick = lambda i, n: bar.update(task, completed=i)
            if args.via == "direct":
                report = evaluate.eval_direct(mem, model, tokenizer, facts, tick)
            elif args.via == "context":
                report = evaluate.eval_context(model, tokenizer, facts, cfg["system_prompt"])
            else:
                from sleepllm.repl import Session

                cfg["max_tokens"] = 24   # replies are not scored; keep them short
                session = Session(model, tokenizer, path, cfg, 4096, mem)
                report = evaluate.eval_chat(session, args.facts, args.n, args.cycles,
                                            args.config, tick)
    report["model"] = path
    evaluate.table(report, Console())
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return 0


def cmd_sleep(args) -> int:
    """Consolidate a memory folder offline (same as /sleep in the REPL)."""

    from rich.console import Console

    from sleepllm.repl import Session, do_sleep

    cfg = _load_cfg(args)
    console = Console(stderr=True)
    model, tokenizer, path, mem = _open_memory(args, cfg, console)
    if not mem.records:
        console.print("no memories to consolidate")
        return 0
    do_sleep(Session(model, tokenizer, path, cfg, 4096, mem), console)
    return 0


def cmd_facts(args) -> int:
    """List the memories of a folder (no model needed)."""
    import json

    from rich.console import Console

    from sleepllm import store
    from sleepllm.config import memory_dir

    cfg = _load_cfg(args)
    folder = memory_dir(cfg, args.memory)
    records = {}
    manifest = store.read_manifest(folder)
    if manifest.get("current"):
        ledger = folder / "checkpoints" / manifest["current"] / "ledger.json"
        records = {r["id"]: r for r in json.loads(ledger.read_text())}
    for rec in store.journal_learns(folder / "journal.jsonl"):
        records.pop(rec.get("supersedes"), None)
        records[rec["id"]] = rec
    for e in store.journal_notes(folder / "journal.jsonl"):   # told, edit not written yet
        records[e["id"]] = {**e, "status": "noted", "learned_at": e["noted_at"],
                            "last_audit": None}
    if args.json:
        print(json.dumps(list(records.values()), indent=1, ensure_ascii=False))
        return 0
    from sleepllm.repl import show_facts

    show_facts(folder, records, Console())
    return 0


def cmd_rollback(args) -> int:
    """Make an earlier checkpoint the current one."""
    from sleepllm import store
    from sleepllm.config import memory_dir

    folder = memory_dir(_load_cfg(args), args.memory)
    history = store.read_manifest(folder).get("history", [])
    target = args.to or (history[1] if len(history) > 1 else None)
    if target not in history or target == history[0]:
        print(f"no earlier checkpoint to roll back to (have: {', '.join(history) or 'none'})")
        return 1
    rest = history[history.index(target):]
    store.atomic_write_json(folder / "manifest.json", {"version": 1, "current": target,
                                                       "history": rest})
    print(f"current checkpoint is now {target}; later ones were set aside")
    return 0


def cmd_export(args) -> int:
    """A standalone mlx-lm folder with the memories fused in (edited layers stay float)."""
    import shutil

    import mlx.core as mx
    from mlx.utils import tree_flatten
    from rich.console import Console

    cfg = _load_cfg(args)
    console = Console(stderr=True)
    model, tokenizer, path, mem = _open_memory(args, cfg, console)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    src = Path(path) if Path(path).exists() else None
    if src is None:
        from mlx_lm.utils import hf_repo_to_path

        src = hf_repo_to_path(path)
    for f in src.iterdir():
        if f.suffix != ".safetensors" and f.name != "model.safetensors.index.json" and f.is_file():
            shutil.copy(f, out / f.name)
    weights = dict(tree_flatten(model.parameters()))
    _uniform_mlps(weights, out / "config.json")
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    _unquantized_in_config(out / "config.json", weights)
    console.print(f"exported {len(mem.records)} memories into {out}")
    return 0


def _uniform_mlps(weights: dict, config_path: Path, multiple: int = 128) -> None:
    """Memory neurons widen one layer's MLP; mlx-lm builds every layer with the config's
    intermediate_size. Every MLP is padded with zero units to one width (the widest, rounded up
    so a quantized layer's groups stay whole) and the config says it: a zero unit's output is
    silu(0)·0 = 0 exactly, quantized or not (zero codes, zero scales and biases)."""
    import json

    import mlx.core as mx

    from sleepllm import store

    gates = {n[: -len(".gate_proj.weight")] for n in weights if n.endswith(".gate_proj.weight")}
    widths = {m: weights[f"{m}.gate_proj.weight"].shape[0] for m in gates}
    if len(set(widths.values())) < 2:
        return
    base = min(widths.values())
    width = base + -(-(max(widths.values()) - base) // multiple) * multiple
    for m, w in widths.items():
        extra = width - w
        if extra == 0:
            continue
        for name in ("gate_proj", "up_proj"):            # rows
            for part in ("weight", "scales", "biases"):
                k = f"{m}.{name}.{part}"
                if k in weights:
                    a = weights[k]
                    weights[k] = mx.concatenate([a, mx.zeros((extra, a.shape[1]), a.dtype)])
        k = f"{m}.down_proj"                             # columns
        a = weights[f"{k}.weight"]
        per = a.shape[1] / w                             # packed columns per unit
        pad = {f"{k}.weight": round(extra * per)}
        if f"{k}.scales" in weights:
            group = w // weights[f"{k}.scales"].shape[1]
            pad[f"{k}.scales"] = pad[f"{k}.biases"] = extra // group
        for name, cols in pad.items():
            if name in weights:
                a = weights[name]
                weights[name] = mx.concatenate([a, mx.zeros((a.shape[0], cols), a.dtype)], axis=1)
    config = json.loads(config_path.read_text())
    config["intermediate_size"] = width
    store.atomic_write_json(config_path, config)


def _unquantized_in_config(path: Path, weights: dict) -> None:
    """A quantized model's config may name a quantization per layer (mixed-precision
    conversions); mlx_lm.load would then quantize an edited layer again and find no scales for
    it. Each float layer that the config names is marked unquantized (False) instead."""
    import json

    from sleepllm import store

    if not path.exists():
        return
    config = json.loads(path.read_text())
    floats = {n[: -len(".weight")] for n in weights
              if n.endswith(".weight") and n[: -len(".weight")] + ".scales" not in weights}
    changed = False
    for key in ("quantization", "quantization_config"):
        per_layer = config.get(key)
        if isinstance(per_layer, dict):
            for name in floats & set(per_layer):
                if per_layer[name] is not False:
                    per_layer[name], changed = False, True
    if changed:
        store.atomic_write_json(path, config)


def cmd_bench(args) -> int:
    import json

    from rich.console import Console

    from sleepllm import bench
    from sleepllm import model as models

    cfg = _load_cfg(args)
    console = Console(stderr=True)
    model, tokenizer, path = models.load(cfg["model"], console)
    report = bench.run(path, model, tokenizer, cfg["model"], args.memory,
                       int(cfg["no_repeat_ngram"]))
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def cmd_setup(args) -> int:
    """Fetch and convert the default model and compute its key statistics (scripts/setup)."""
    from rich.console import Console

    from sleepllm import stats
    from sleepllm.config import cache_dir, load_config
    from sleepllm.model import fingerprint, load

    console = Console(stderr=True)
    cfg = load_config()
    model, tok, path = load("default", console)
    units = ("negatives", "strangers") if cfg["editor"]["method"] == "neurons" else ()
    stats.load(model, tok, cfg["editor"]["layers"], cache_dir(), fingerprint(model),
               cfg["editor"]["cov_tokens_per_dk"], console, ("prefixes", "cinv") + units)
    print(path)
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="sleepllm", description=__doc__)
    p.add_argument("--version", action="store_true",
                   help="versions, device, BLAS and SwiGLU kernel in use")
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("chat", help="chat (reads a pipe line by line in script mode)")
    _common(c)
    c.add_argument("--temp", type=float, help="sampling temperature (0 = greedy)")
    c.add_argument("--max-tokens", type=int, help="longest reply in tokens")
    c.add_argument("--max-context", type=int, help="conversation token budget")
    c.add_argument("--system", help="system prompt")
    c.set_defaults(func=cmd_chat)
    e = sub.add_parser("eval", help="measure recall and locality on a fact file")
    _common(e)
    e.add_argument("--facts", required=True, help="JSONL fact file (shared/eval schema)")
    e.add_argument("--via", choices=["direct", "chat", "context"], default="direct",
                   help="direct: editor only; chat: REPL path, /sleep, new process; "
                        "context: baseline with the statements in the system prompt")
    e.add_argument("--n", type=int, help="first N facts only")
    e.add_argument("--cycles", type=int, default=1, help="(--via chat) tell, sleep, repeat")
    e.add_argument("--json", help="write the full report here")
    e.set_defaults(func=cmd_eval)
    sl = sub.add_parser("sleep", help="consolidate a memory folder (audit, refresh, prune)")
    _common(sl)
    sl.set_defaults(func=cmd_sleep)
    f = sub.add_parser("facts", help="list the memories of a folder")
    _common(f)
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_facts)
    r = sub.add_parser("rollback", help="restore an earlier checkpoint")
    _common(r)
    r.add_argument("--to", help="checkpoint name (default: the previous one)")
    r.set_defaults(func=cmd_rollback)
    x = sub.add_parser("export", help="write an mlx-lm model folder with the memories fused in")
    _common(x)
    x.add_argument("--out", required=True)
    x.set_defaults(func=cmd_export)
    b = sub.add_parser("bench", help="speed: generation vs mlx_lm, fast vs reference BLAS; "
                                     "with --memory, start-up and wake latency")
    _common(b)
    b.add_argument("--json", help="write the results here")
    b.set_defaults(func=cmd_bench)
    s = sub.add_parser("setup", help="fetch and convert the default model")
    s.set_defaults(func=cmd_setup)
    return p


def _clear_streams():
    """MLX asks every thread that used it, the main one too, to destroy its streams itself
    before exit: left to the process's teardown they can abort it."""
    if "mlx.core" in sys.modules:
        sys.modules["mlx.core"].clear_streams()


atexit.register(_clear_streams)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        print(_versions())
        return 0
    if not args.command:
        args = build_parser().parse_args(["chat", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
