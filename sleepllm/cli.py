"""Command line: each sub-command maps to one function."""
import argparse
import sys

from sleepllm import __version__


def _versions() -> str:
    import mlx.core as mx
    import mlx_lm

    from sleepllm.blas import blas_in_use

    return (f"sleepllm {__version__}\nmlx {mx.__version__}\nmlx-lm {mlx_lm.__version__}\n"
            f"device {mx.default_device()}\nBLAS {blas_in_use()}")


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
    model, tokenizer, path = models.load(cfg["model"], console)
    session = Session(model, tokenizer, path, cfg, models.context_window(path, model))
    if sys.stdin.isatty():
        return run_tty(session, console, data_dir() / "history")
    return run_script(session, sys.stdin, console)


def cmd_setup(args) -> int:
    """Fetch and convert the default model (used by scripts/setup)."""
    from sleepllm.config import data_dir
    from sleepllm.gguf import ensure_default_model

    print(ensure_default_model(data_dir()))
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="sleepllm", description=__doc__)
    p.add_argument("--version", action="store_true", help="versions, device and BLAS in use")
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("chat", help="chat (reads a pipe line by line in script mode)")
    _common(c)
    c.add_argument("--temp", type=float, help="sampling temperature (0 = greedy)")
    c.add_argument("--max-tokens", type=int, help="longest reply in tokens")
    c.add_argument("--max-context", type=int, help="conversation token budget")
    c.add_argument("--system", help="system prompt")
    c.set_defaults(func=cmd_chat)
    s = sub.add_parser("setup", help="fetch and convert the default model")
    s.set_defaults(func=cmd_setup)
    return p


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
