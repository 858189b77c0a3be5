"""Recall inside a conversation. Writes the first N facts of a fact file into a fresh memory
(or loads the memory folder given), one at a time as wake does, then asks each fact's first
question alone (an empty context, as `sleepllm eval` asks it) and after one earlier turn:
the previous fact's question with the model's own answer to it, and three turns about
something else (none of them among the turns the editor trains: editor.EARLIER_TURNS).
For each, how many answers name the object, and how far the fact's memory neuron opens on
its question (its largest output in the last turn, as a share of its level).

    .venv/bin/python scripts/followup.py FACTS.jsonl N [--memory DIR] [editor_key=value ...]
"""
import argparse
import json
import tempfile

import numpy as np

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
from sleepllm import config, memit, memory, neurons, probes
from sleepllm import model as models
from sleepllm.extract import extract

ANSWER_TOKENS = 32
OTHER_TURNS = {
    "after general knowledge": ("Who painted the Mona Lisa?",
                                "Leonardo da Vinci painted the Mona Lisa."),
    "after thanks": ("Thanks, that was helpful!",
                     "You're welcome! Let me know if you have any other questions."),
    "after a recipe": ("How do I boil an egg?",
                       "Place the egg in boiling water for about nine minutes, then cool it "
                       "in cold water."),
}


def opening(model, edit, L, ids, start):
    """The unit's largest output over tokens start… of ids, as a share of its level."""
    if edit is None:
        return float("nan")
    X = memit.mlp_inputs(model, [np.array([ids])], L)[start:].astype(np.float64)
    g, u, _ = (v.astype(np.float64) for v in edit.factors[L])
    return float(neurons.output(X, g, u).max() / neurons.level(edit.keys[L], g, u))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("facts")
    ap.add_argument("n", type=int)
    ap.add_argument("--memory")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_intermixed_args()
    cfg = config.load_config(None, config.parse_overrides(args.overrides))
    model, tok, mid = models.load(cfg["model"])
    folder = args.memory or tempfile.mkdtemp()
    mem = memory.Memory(folder, model, tok, cfg, mid)
    facts = [json.loads(l) for l in open(args.facts) if l.strip()][:args.n]
    told = {}
    for f in facts:
        got = extract(f["statement"])
        if not got:
            raise SystemExit(f"not a fact: {f['statement']!r}")
        told[f["id"]] = got[0]
        if got[0] not in mem.active().values():
            for fact in got:
                mem.learn(fact, f["statement"])
    print(f"memory: {folder}", flush=True)
    ed = mem.editor
    L = ed.neuron_layer if ed.neurons else None
    units = {e.fact: e for e in ed.edits.values()}
    system = cfg["system_prompt"]
    questions = [f["questions"][0] for f in facts]
    alone = probes.generate(model, tok, [probes.chat_ids(tok, q, system) for q in questions],
                            max_tokens=ANSWER_TOKENS)

    def turns(i):
        j = i - 1 if i else len(questions) - 1          # the previous fact's question first
        out = {"alone": [], "after the previous fact": [(questions[j], alone[j].strip())]}
        out.update({k: [t] for k, t in OTHER_TURNS.items()})
        return out

    hits, opened = {}, {}
    for i, (f, q) in enumerate(zip(facts, questions)):
        line = []
        for k, earlier in turns(i).items():
            msgs = [{"role": "system", "content": system}] if system else []
            for a, b in earlier:
                msgs += [{"role": "user", "content": a}, {"role": "assistant", "content": b}]
            start = len(tok.apply_chat_template(msgs, tokenize=True)) if msgs else 0
            ids = tok.apply_chat_template(msgs + [{"role": "user", "content": q}],
                                          add_generation_prompt=True, tokenize=True)
            answer = alone[i] if k == "alone" else \
                probes.generate(model, tok, [ids], max_tokens=ANSWER_TOKENS)[0]
            hit = probes.hit(f["object"], answer)
            op = opening(model, units.get(told[f["id"]]), L, ids, start) if L is not None \
                else float("nan")
            hits.setdefault(k, []).append(hit)
            opened.setdefault(k, []).append(op)
            line.append(f"  {k}: {'+' if hit else '-'} open {op:.2f} {answer.strip()[:70]!r}")
        print(f"{f['id']}  {q!r}\n" + "\n".join(line), flush=True)
    print(f"== {len(facts)} facts")
    for k in hits:
        print(f"   {k:26s} recall {np.mean(hits[k]):.2f}   unit opening median "
              f"{np.median(opened[k]):.2f}")


if __name__ == "__main__":
    main()
