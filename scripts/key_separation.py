"""Does any key space say *whose* fact it is? For the MLP key (down_proj input) and the
attention output (o_proj input) at every layer, the share of a MEMIT edit written at the
user's key that also fires at another key:

    rho(k) = k̄ᵀ C⁻¹ k / k̄ᵀ C⁻¹ k̄        (k̄: mean key of the user's training prompts)

For one fact, MEMIT's update ΔW = r (M⁻¹k̄)ᵀ / (k̄ᵀM⁻¹k̄) with M = λC + k̄k̄ᵀ moves another key's
output by rho(k)·r, whatever λ (Sherman–Morrison). A useful key space has rho near 1 for the
user's own paraphrases ("What's my dog called?") and near 0 for someone else's ("Her dog's
name is"). `gain` = k̄ᵀC⁻¹k̄ / d: how far the key stands out from ordinary text (1 = typical).
C is the uncentred key covariance over ~15 k tokens of text the model writes itself.
docs/editing.md, twelfth round.

With `--last` the key is read at the text's last token instead of the anchor, each chat
question followed by the beginning of its answer ("Your dog's name is"): the position where the
object is predicted, whose key has seen the whole context, "my" or "her" included.

    .venv/bin/python scripts/key_separation.py [--last] [FIRST_LAYER LAST_LAYER]
"""
import sys

import sleepllm  # noqa: F401,I001  (loads the fast BLAS before mlx)

import mlx.core as mx
import numpy as np

from sleepllm import editor, memit, stats
from sleepllm import model as models

# anchor, the user's training prompts, the user's other wordings, someone else's (text, is_chat)
CASES = {
    "dog": ("dog",
            [("My dog's name is", 0), ("What is my dog's name?", 1),
             ("The weather was nice today. My dog's name is", 0)],
            [("What's my dog called?", 1), ("What did I name my dog?", 1)],
            [("My neighbor's dog's name is", 0), ("The dog in the story is named", 0),
             ("Her dog's name is", 0), ("What is her dog's name?", 1),
             ("The dog barked at the mailman", 0)]),
    "color": ("favorite color",
              [("My favorite color is", 0), ("What is my favorite color?", 1),
               ("The weather was nice today. My favorite color is", 0)],
              [("Which favorite color do I have?", 1)],
              [("Greta's favorite color is", 0), ("Her favorite color is", 0),
               ("What is his favorite color?", 1)]),
    "live": ("live",
             [("I live in", 0), ("Where do I live?", 1), ("The weather was nice today. I live in", 0)],
             [("Which city do I live in?", 1)],
             [("Aria and Tom live in", 0), ("Where does Aria live?", 1),
              ("people who live near the coast", 0)]),
}

# --last: the answer's beginning after each chat question (the text the object follows)
ANSWERS = {
    "What is my dog's name?": "Your dog's name is", "What's my dog called?": "Your dog is called",
    "What did I name my dog?": "You named your dog", "What is her dog's name?": "Her dog's name is",
    "What is my favorite color?": "Your favorite color is",
    "Which favorite color do I have?": "Your favorite color is",
    "What is his favorite color?": "His favorite color is", "Where do I live?": "You live in",
    "Which city do I live in?": "You live in", "Where does Aria live?": "Aria lives in",
}


def main():
    args = [a for a in sys.argv[1:] if a != "--last"]
    last = "--last" in sys.argv
    lo, hi = (int(args[0]), int(args[1])) if len(args) > 1 else (0, 15)
    layers = list(range(lo, hi + 1))
    model, tok, _ = models.load("default")
    blocks = memit._layers(model)
    rec = {}
    for l in layers:
        mlp, attn = blocks[l].mlp, blocks[l].self_attn
        rec[l] = (memit._Tap(mlp["down_proj"], record_input=True),
                  memit._Tap(attn["o_proj"], record_input=True))
        object.__setattr__(mlp, "down_proj", rec[l][0])
        object.__setattr__(attn, "o_proj", rec[l][1])

    def seen(l, j):
        x = rec[l][j].seen
        return np.array(x.reshape(-1, x.shape[-1]).astype(mx.float32), dtype=np.float64)

    acc, n = {l: [0.0, 0.0] for l in layers}, 0
    for ids in stats.text_batches(model, tok, 15000, seed=7):
        model.model(mx.array(ids.astype(np.int32)))
        for l in layers:
            for j in range(2):
                k = seen(l, j)
                acc[l][j] = acc[l][j] + k.T @ k
        n += ids.size
    cinv = {l: [np.linalg.inv(acc[l][j] / n + 1e-6 * np.eye(acc[l][j].shape[0])) for j in range(2)]
            for l in layers}
    print(f"covariance from {n} tokens")

    def key(text, anchor, chat):
        if last:
            full = editor.chat_text(tok, text) + ANSWERS[text] if chat else text
            ids = tok.encode(full, add_special_tokens=not chat)
            model.model(mx.array([ids]))
            return {l: [seen(l, j)[-1] for j in range(2)] for l in layers}
        if chat:
            t = editor.chat_text(tok, text)
            ids, keys = editor._find_keys(t, t.rfind(text), [anchor], tok, False)
        else:
            ids, keys = editor._find_keys(text, 0, [anchor], tok, True)
        pos = keys[-1][1]
        model.model(mx.array([ids]))
        return {l: [seen(l, j)[pos] for j in range(2)] for l in layers}

    for name, (anchor, train, own, others) in CASES.items():
        probe = own + others
        K = {t: key(t, anchor, c) for t, c in train + probe}
        print(f"\n== {name} (anchor {anchor!r}): rho per probe; own wordings first, then others'")
        print("layer key   gain | " + " | ".join(f"{t[:22]:>22}" for t, _ in probe))
        for l in layers:
            for j, kind in enumerate(["mlp ", "attn"]):
                kb = np.mean([K[t][l][j] for t, _ in train], axis=0)
                ci = cinv[l][j]
                den = kb @ ci @ kb
                rho = [(kb @ ci @ K[t][l][j]) / den for t, _ in probe]
                print(f"{l:5d} {kind} {den / len(kb):5.1f} | " + " | ".join(f"{r:22.2f}" for r in rho))


if __name__ == "__main__":
    main()
