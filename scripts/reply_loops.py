"""How often the chat's greedy replies loop, with and without `no_repeat_ngram`.

    .venv/bin/python scripts/reply_loops.py [FACTS] [N_TOKENS]

Sends every sixth statement of a fact file (default: the dev set) and ten general questions as
single chat messages to the default model, 96-token greedy replies, once with no_repeat_ngram 0
and once with 4; prints how many replies repeat a 4-gram, the time, how many first sentences
are unchanged, and every reply side by side.
"""
import json
import sys
import time
from pathlib import Path

import sleepllm  # noqa: F401  (the fast BLAS before mlx)
from sleepllm import chat, probes
from sleepllm import model as models

facts_file = sys.argv[1] if len(sys.argv) > 1 else \
    str(Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev_facts.jsonl")
n_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 96
m, tok, _ = models.load("default")
facts = [json.loads(l) for l in Path(facts_file).read_text().splitlines() if l.strip()]
msgs = [f["statement"] for f in facts[::6]] + probes.general_questions()[:10]


def loops(ids):
    g = [tuple(ids[i:i + 4]) for i in range(len(ids) - 3)]
    return len(g) != len(set(g))


res = {}
for n in (0, 4):
    t0 = time.perf_counter()
    toks = [[r.token for r in chat.generate(m, tok, chat.render(tok, [{"role": "user",
                                                                        "content": q}]),
                                            n_tokens, 0.0, n)] for q in msgs]
    res[n] = [tok.decode(t) for t in toks]
    print(f"no_repeat_ngram={n}: {sum(map(loops, toks))} of {len(msgs)} replies repeat a "
          f"4-gram; {time.perf_counter() - t0:.1f} s", flush=True)
same = sum(a.split(".")[0] == b.split(".")[0] for a, b in zip(res[0], res[4]))
print(f"first sentence unchanged: {same} of {len(msgs)}")
for q, a, b in zip(msgs, res[0], res[4]):
    print("Q:", q)
    print("  0:", a.replace("\n", " "))
    print("  4:", b.replace("\n", " "))
