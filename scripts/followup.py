"""Recall inside a conversation. Writes the first N facts of a fact file into a fresh memory,
one at a time as wake does, then asks each fact's first question twice: alone (an empty
context, as `sleepllm eval` asks it) and as the second turn of a conversation whose first turn
is the previous fact's question and the model's own answer to it.

    .venv/bin/python scripts/followup.py FACTS.jsonl N [editor_key=value ...]
"""
import json
import sys
import tempfile

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
from sleepllm import config, memory, probes
from sleepllm import model as models
from sleepllm.extract import extract

ANSWER_TOKENS = 32


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    cfg = config.load_config(None, config.parse_overrides(sys.argv[3:]))
    model, tok, mid = models.load(cfg["model"])
    mem = memory.Memory(tempfile.mkdtemp(), model, tok, cfg, mid)
    facts = [json.loads(l) for l in open(path) if l.strip()][:n]
    for f in facts:
        got = extract(f["statement"])
        if not got:
            raise SystemExit(f"not a fact: {f['statement']!r}")
        for fact in got:
            mem.learn(fact, f["statement"])
    system = cfg["system_prompt"]
    questions = [f["questions"][0] for f in facts]
    alone = probes.generate(model, tok, [probes.chat_ids(tok, q, system) for q in questions],
                            max_tokens=ANSWER_TOKENS)
    turns = []
    for i, q in enumerate(questions):
        j = i - 1 if i else len(questions) - 1          # the previous fact's question first
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": questions[j]},
            {"role": "assistant", "content": alone[j].strip()},
            {"role": "user", "content": q}]
        turns.append(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True))
    second = probes.generate(model, tok, turns, max_tokens=ANSWER_TOKENS)
    a = s = 0
    for f, q, x, y in zip(facts, questions, alone, second):
        hx, hy = probes.hit(f["object"], x), probes.hit(f["object"], y)
        a, s = a + hx, s + hy
        print(f"{f['id']}  alone {'+' if hx else '-'}  second turn {'+' if hy else '-'}  {q!r}\n"
              f"      alone: {x.strip()[:90]!r}\n      second: {y.strip()[:90]!r}", flush=True)
    print(f"== {len(facts)} facts: asked alone {a / len(facts):.2f}, "
          f"as the second turn {s / len(facts):.2f}")


if __name__ == "__main__":
    main()
