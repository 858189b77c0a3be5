"""Write statements one at a time into a fresh memory (as wake does) and show, after each,
the greedy chat answers to some questions and the held-out perplexity: the one-off runs of
docs/editing.md (fourth round).

    .venv/bin/python scripts/edit_probe.py "I live in Tromsø.|My favorite color is teal." \
        "Where do I live?|What is the capital of France?" [editor_key=value ...]
"""
import sys
import tempfile
import time

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
from sleepllm import config, memory, probes
from sleepllm import model as models
from sleepllm.extract import extract


def main():
    statements, questions = sys.argv[1].split("|"), sys.argv[2].split("|")
    cfg = config.load_config(None, config.parse_overrides(sys.argv[3:]))
    model, tok, mid = models.load(cfg["model"])
    mem = memory.Memory(tempfile.mkdtemp(), model, tok, cfg, mid)

    def show(tag):
        ids = [probes.chat_ids(tok, q, cfg["system_prompt"]) for q in questions]
        print(f"== {tag}  perplexity {probes.perplexity(model, tok):.2f}")
        for q, a in zip(questions, probes.generate(model, tok, ids, max_tokens=16)):
            print(f"   {q!r} -> {a!r}", flush=True)

    show("base model")
    for s in statements:
        got = extract(s)
        if not got:
            print(f"== not a fact: {s!r}")
            continue
        t = time.perf_counter()
        fid, _ = mem.learn(got[0], s)
        show(f"after {s!r} (v* NLL {mem.editor.edits[fid].nll:.3f}, "
             f"{time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":
    main()
