"""Can a memory neuron keyed at the relation's word after a person's name ("Rasmus plays",
"Rasmus's favorite color") tell that person from others, by layer? (docs/editing.md,
thirty-fourth round.)

    .venv/bin/python scripts/person_key_probe.py [LAYER ...]     (default 8 12 16 20)

For one person (Rasmus) and two relations, a gate is fit as neurons.fit fits one (weighted
logistic regression, scaled so that the median positive is at T): positives are two wordings
of the relation after seven prefixes; negatives are the same wordings with 20 other names,
every token of a few ordinary sentences, of the wordings with eight of those names and of five
other things said of Rasmus. Printed per layer: the positives' gate values; two held-out
wordings of Rasmus's relation (open above T/4); the share of 20 *unseen* names, at the
anchor, above T/4; the largest value at any token of unseen names' sentences and of six
other things said of Rasmus (not among the negatives).
"""
import sys

import sleepllm  # noqa: F401  (before mlx and numpy: the BLAS)
import numpy as np

from sleepllm import config, memit, neurons
from sleepllm import model as models
from sleepllm.editor import _keyed

cfg = config.load_config(None, {})
model, tok, _ = models.load(cfg["model"])
TRAIN_NAMES = ["Anna", "Tom", "Lena", "Marco", "Priya", "Jonas", "Chloe", "Dmitri", "Aiko",
               "Pablo", "Greta", "Omar", "Ingrid", "Felix", "Nadia", "Hugo", "Sofia", "Kenji",
               "Mira", "Lars"]
TEST_NAMES = ["Florin", "Paskal", "Beatriz", "Olek", "Svea", "Tariq", "Elif", "Bruno", "Yara",
              "Matteo", "Hanne", "Idris", "Ronja", "Cyril", "Leila", "Viggo", "Amara", "Teodor",
              "Wren", "Ulla"]
P = "Rasmus"
REL = {  # relation: (trained wordings, held-out wordings, anchors)
    "color": (["{P}'s favorite color is", "What is {P}'s favorite color?"],
              ["Do you know {P}'s favorite color?", "Tell me {P}'s favourite color."], ["color"]),
    "plays": (["{P} plays the", "What instrument does {P} play?"],
              ["The instrument {P} plays is the", "Which instrument does {P} play?"],
              ["plays", "play"]),
}
OTHER_REL = ["{P} works as a", "{P} lives in the city of", "{P}'s dog is named",
             "{P} drives a", "{P} was born in", "What does {P} do for a living?",
             "Where does {P} live?", "{P}'s birthday is in", "{P} is married to",
             "The sport {P} plays is", "{P}'s favorite food is"]
ORDINARY = ["The weather today is sunny and warm.", "She plays the piano every evening.",
            "My favorite color is blue.", "What color is the sky?", "He plays football on Sundays.",
            "The band plays the song again.", "Which instrument is the loudest?"]
PREFIXES = ["", "I have a question. ", "Tell me something. ", "Yesterday we talked. ",
            "Here is a thing I know. ", "Let me think. ", "Okay. "]


def main():
    layers = [int(a) for a in sys.argv[1:]] or [8, 12, 16, 20]
    for rel, (train, held, anchors) in REL.items():
        for layer in layers:
            at = lambda texts, a=anchors: memit.mlp_inputs(model, [_keyed(texts, a, tok)], layer)
            every = lambda texts: np.concatenate([memit.mlp_inputs(
                model, [np.array([tok.encode(t)])], layer) for t in texts])
            said = lambda ts, n: [t.format(P=n) for t in ts]
            pos = at([p + t for p in PREFIXES for t in said(train, P)])
            neg = at([p + t for n in TRAIN_NAMES for t in said(train, n) for p in PREFIXES[:3]]
                     + [t for n in TRAIN_NAMES for t in said(held, n)])
            ordinary = np.concatenate([
                at(ORDINARY, anchors + ["color", "plays", "instrument"]),
                every(ORDINARY + [t for n in TRAIN_NAMES[:8] for t in said(train + held, n)]
                      + said(OTHER_REL[:5], P))])
            X = np.concatenate([pos, neg, ordinary])
            y = np.concatenate([np.ones(len(pos)), -np.ones(len(neg) + len(ordinary))])
            w = np.concatenate([np.full(len(pos), len(neg) / len(pos)),
                                np.ones(len(neg) + len(ordinary))])
            s = np.sqrt((X ** 2).mean())
            g = neurons.logistic(X / s, y, w, 1.0)
            med = np.median(pos @ g / s)
            gate = lambda R: (R @ g / s) * neurons.T / med
            unseen = gate(at([t for n in TEST_NAMES for t in said(train + held, n)]))
            anywhere = gate(every([t for n in TEST_NAMES[:5] for t in said(train + held, n)]))
            others = gate(every(said(OTHER_REL[5:], P)))
            print(f"{rel} L{layer:2d}: positives {np.round(gate(pos), 0)}; held-out wordings "
                  f"{np.round(gate(at(said(held, P))), 1)}; unseen names open at the anchor "
                  f"{(unseen > neurons.T / 4).mean():.2f}; max at any token: unseen names "
                  f"{anywhere.max():.1f}, Rasmus's other things {others.max():.1f} "
                  f"(T = {neurons.T:.0f})", flush=True)


main()
