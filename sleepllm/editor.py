"""The editor: facts rendered into edit requests, written into (and reverted from) the weights.

    Editor.write(fact)  -> Edit      (v* optimisation, then a memory neuron (neurons.py) or a
                                      MEMIT/AlphaEdit solve (memit.py): `editor.method`)
    Editor.revert(edit)              (exact: the weights are W₀ and the remaining edits)

Edited layers become float32 `nn.Linear`s (dequantized if the model is quantized) and stay
float for life. A MEMIT edit is kept as per-layer factors ΔW_l = A_l B_lᵀ of `down_proj`; a
memory neuron as one row of `gate_proj` and `up_proj` and one column of `down_proj` at the
last edited layer (the MLP grows by one unit). Both are stored in float16 and applied from
those very float16 values, so what is on disk is exactly what is in the weights and a revert
restores them to float32 round-off (≤1e-6).
"""
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from sleepllm import memit, neurons, probes, relations
from sleepllm.relations import Fact

# ------------------------------------------------------------------ facts -> prompts

# The user's own words: a key of a fact about the user is read where the text has already said
# whose it is ("The car I drive" at "drive", not at "car": "The car Anna drives" begins alike).
OWNED = re.compile(r"(?<!\w)(?:I|[Mm]y|[Mm]e|[Ww]e|[Oo]ur|[Yy]ou|[Yy]our)(?!\w)")


def _find_keys(text, start, anchor_list, tokenizer, add_special, owned=False):
    """Token positions of the last token of each anchor occurrence in text[start:] (`owned`:
    only those after one of the user's own words, or that contain one)."""
    enc = tokenizer._tokenizer(text, add_special_tokens=add_special)
    keys = []
    for a, anchor in enumerate(anchor_list):
        for m in re.finditer(r"(?<!\w)" + re.escape(anchor) + r"(?!\w)", text[start:], re.I):
            if owned and not OWNED.search(text, start, start + m.end()):
                continue
            t = enc.char_to_token(start + m.end() - 1)
            if t is not None:
                keys.append((a, t))
    return enc["input_ids"], keys


def chat_text(tokenizer, question, system_prompt=None, earlier=()):
    """The chat template's text of `question` asked after the turns `earlier` ((user,
    assistant) pairs), ready for the answer."""
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for asked, answered in earlier:
        msgs += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
    msgs.append({"role": "user", "content": question})
    return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)


# turns a conversation may have had before a question about a memory. After one, the inputs at
# the question's anchor differ: a gate trained on its questions asked alone opened half as far
# on the second turn of a conversation (median 0.49 of its level on 30 dev facts, 0.23
# answered; docs/editing.md, forty-fifth round). A memory neuron's gate is also trained open on
# its questions after each of these and after the fact's own sibling turn (`sibling_turn`: the
# same kind of thing, another one), and its δ on its first question after the first
# `editor.later_turns` of [sibling turn] + these — the sibling's (a question about the same
# kind of thing, whose answer the model otherwise repeats), a general one, a greeting
EARLIER_TURNS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Hello! How are you today?", "I'm doing well, thank you! How can I help you?"),
    ("What is my goldfish called?", "Your goldfish is called Bubbles."),
    ("Can you give me a tip for sleeping better?",
     "Keep a regular schedule and avoid screens before bed."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Where does my aunt live?", "Your aunt lives in Porto."),
    ("What does my uncle do for a living?", "Your uncle works as a carpenter."),
    ("Write a haiku about rain.",
     "Soft rain on the roof,\nquiet drops on window glass,\nthe garden drinks deep."),
    ("What is 12 times 7?", "12 times 7 is 84."),
    ("Who is my piano teacher?", "Your piano teacher is Mr. Okafor."),
]


def _question_prompt(fact: Fact, question, answer, anchors, tokenizer, system_prompt=None,
                     earlier=()):
    """`question` through the chat template (after the turns `earlier`) with the fact's whole
    answer as target, keyed at `anchors` from the question on (the answer's beginning
    included); None if no anchor occurs there."""
    enc_t = lambda s: tokenizer._tokenizer(s, add_special_tokens=False)["input_ids"]
    text = chat_text(tokenizer, question, system_prompt, earlier)
    _, keys = _find_keys(text + answer, text.rfind(question), anchors, tokenizer, False,
                         fact.is_self)
    if not keys:
        return None
    return memit.Prompt(enc_t(text + relations.full_answer(fact, answer)), len(enc_t(text)),
                        keys)


SIBLING_TOKENS = 8   # longest object sibling_turn takes from the model
# where a statement's object ends: not at the point of "Mr." or "Dr." (relations.TITLES)
OBJECT_END = re.compile("".join(rf"(?<!\b{t})" for t in relations.TITLES) +
                        r"[.!?](?:\s|$)|[,;:\n]| (?:and|but|who|which|because)\b")


def stated_object(text: str) -> str:
    """The object a statement cue's continuation names: up to where its sentence or clause
    ends (OBJECT_END), or inside the quotes it opens with (' "Luna". She' -> "Luna")."""
    quoted = re.match(r'\s*["\u201c]([^"\u201d]*)', text)
    m = OBJECT_END.search(text)
    return (quoted.group(1) if quoted else text[: m.start()] if m else text).strip()


def sibling_turn(fact: Fact, model, tokenizer, system_prompt, seen: dict):
    """(question, answer): the first question of the fact's sibling (relations.sibling: "What
    is my mother's name?" for the father's name) answered as a memory answers it, with the
    object the model itself continues the sibling's statement cue with ("My mother's name
    is" → " Margaret": "Your mother's name is Margaret."). After such a turn a question about
    this fact was most often answered with the turn's answer again (docs/editing.md,
    forty-sixth round). None for a fact without a sibling or when the model names nothing.
    `seen`: {cue: object} of earlier writes, not generated again."""
    sib = relations.sibling(fact)
    if sib is None or not relations.questions(sib):
        return None
    cue = relations.cues(sib)[0]
    if cue not in seen:
        stop = lambda text: bool(OBJECT_END.search(text))
        text = probes.generate(model, tokenizer, [probes.raw_ids(tokenizer, cue)],
                               max_tokens=SIBLING_TOKENS, until=[stop])[0]
        seen[cue] = stated_object(text)
    if not seen[cue]:
        return None
    q, answer = relations.questions(sib)[0]
    return q, relations.full_answer(replace(sib, object=seen[cue]), answer)


def later_prompts(fact: Fact, tokenizer, system_prompt, n_questions, turns):
    """The fact's first `n_questions` chat questions, each asked after each earlier turn in
    `turns`, with their answers, keyed at the unit's anchors in the question (render's
    questions, later in a conversation)."""
    anchors = relations.anchors(fact, True)
    out = []
    for q, answer in relations.questions(fact)[:n_questions]:
        for turn in turns:
            p = _question_prompt(fact, q, answer, anchors, tokenizer, system_prompt, [turn])
            if p:
                p.keys = [(0, t) for _, t in p.keys]
                out.append(p)
    return out


def render(fact: Fact, tokenizer, prefixes, system_prompt=None, n_questions=2, unit=False):
    """Edit prompts for a fact: the raw cue, alone and after random prefixes, and chat-template
    questions whose target is the whole answer ("Your dog's name is Waffles."), so the model
    learns to start the answer and to finish it.

    Returns (prompts, anchors); only anchors that occur are returned, renumbered. `unit`: the
    anchors of a memory neuron (relations.anchors)."""
    anchors = relations.anchors(fact, unit)
    owned = fact.is_self
    obj = " " + fact.object
    enc_t = lambda s: tokenizer._tokenizer(s, add_special_tokens=False)["input_ids"]
    prompts = []
    cue = relations.cues(fact)[0]
    for pre in [""] + list(prefixes):
        text = f"{pre}. {cue}" if pre else cue
        ids, keys = _find_keys(text, len(text) - len(cue), anchors, tokenizer, True, owned)
        if keys:
            prompts.append(memit.Prompt(ids + enc_t(obj), len(ids), keys))
    for q, answer in relations.questions(fact)[:n_questions]:
        p = _question_prompt(fact, q, answer, anchors, tokenizer, system_prompt)
        if p:
            prompts.append(p)
    present = sorted({a for p in prompts for a, _ in p.keys})
    if not present:
        raise ValueError(f"no anchor of {anchors} found in the prompts for {fact}")
    remap = {a: i for i, a in enumerate(present)}
    for p in prompts:
        p.keys = [(remap[a], t) for a, t in p.keys]
    return prompts, [anchors[a] for a in present]


def contrast_prompts(fact: Fact, tokenizer):
    """Key positions of the anchor said of someone else ("Her dog", "The dog")."""
    out = []
    for text, anchor in relations.contrasts(fact):
        ids, keys = _find_keys(text, 0, [anchor], tokenizer, True)
        if keys:
            out.append(memit.Prompt(ids, len(ids), [(0, keys[-1][1])]))
    return out


def object_prompts(fact: Fact, prompts, tokenizer):
    """Key positions of the object's own tokens in the fact's prompts. Token j of the object
    (all but its last) predicts token j + 1: a later edit that moves its key misspells the
    object ("Tromsøn") while the anchor still holds its value (docs/editing.md, eighteenth
    round). Returns (prompts with anchor index j at token j of the object, number of such
    tokens); a one-token object has none."""
    obj = tokenizer._tokenizer(" " + fact.object, add_special_tokens=False)["input_ids"]
    n = len(obj) - 1
    if n < 1:
        return [], 0
    out = []
    for p in prompts:
        tgt = p.ids[p.target_start:]
        for s in range(len(tgt) - n):
            if tgt[s: s + n + 1] == obj:
                at = p.target_start + s
                out.append(memit.Prompt(p.ids[: at + n], 0, [(j, at + j) for j in range(n)]))
                break
    return out, n


def training_set(fact: Fact, prompts, companions, tokenizer, prefixes, system_prompt, hp,
                 unit=False):
    """The v* search's prompts and the share of δ each is trained with: the fact's own prompts
    (`render`), then each companion's (same anchor; the shared key must keep carrying them).
    A bare statement cue about the user ("My dog's name is", its key at the text's second
    token, a common word) receives only part of the shift the solve writes, so it is trained
    with `raw_share` of δ; a named person's bare cue, keyed at the name, receives nearly all
    and keeps 1 (docs/editing.md, seventeenth and nineteenth rounds)."""
    train, weights = [], []
    for f, ps in [(fact, prompts)] + [
            (o, render(o, tokenizer, prefixes[:1], system_prompt, min(2, hp.questions),
                       unit)[0])
            for o in companions]:
        share = hp.raw_share if f.is_self else 1.0
        weights += [share] + [1.0] * (len(ps) - 1)    # render puts the bare statement cue first
        train += ps
    return train, weights


def others_prompts(fact: Fact, tokenizer, system_prompt=None):
    """Where a memory neuron must stay closed: every token of the fact's cues and questions
    said of someone else (relations.others_wordings; the questions through the chat template)
    — each cue going on with the fact's own object, "Anna's favorite color is chartreuse.":
    the answer's tokens carry the cue's meaning too —, and, for a named person, of the other
    things said of them (relations.about_wordings: "Rasmus works as a" for Rasmus's age), from
    the first token that differs from the fact's own wording; and the anchor in "Her
    dog"-style texts (contrast_prompts)."""
    enc = lambda s, special: tokenizer._tokenizer(s, add_special_tokens=special)["input_ids"]
    obj = enc(" " + fact.object + ".", False)
    cues, questions = relations.others_wordings(fact)
    about_cues, about_questions = relations.about_wordings(fact)    # none for the user's facts
    noun_cues, noun_questions = relations.other_nouns(fact)
    own_cues, own_questions = relations.wordings(fact)
    own = [enc(c, True) for c in own_cues] + \
        [enc(chat_text(tokenizer, q, system_prompt), False) for q in own_questions]
    texts = [enc(c, True) + obj for c in cues] + \
        [enc(c, True) for c in about_cues + noun_cues] + \
        [enc(chat_text(tokenizer, q, system_prompt), False)
         for q in questions + about_questions + noun_questions]
    out = []
    for ids in texts:
        start = max(memit.shared([ids, o]) for o in own)
        if start < len(ids):
            out.append(memit.Prompt(ids, len(ids), [(0, t) for t in range(start, len(ids))]))
    return out + contrast_prompts(fact, tokenizer)


def continued_prompts(fact: Fact, model, tokenizer, seen: dict):
    """Every token the model writes after a few of the fact's cues said of someone else
    (relations.others_wordings; CONTINUED of them, evenly spaced, continued CONTINUED_TOKENS):
    "Her dog's name is" goes on " Max. He is a 12-year-old Labrador Retriever", and a unit
    shut on the cue itself still opened at " Labrador" (0.57 of its level; docs/editing.md,
    thirty-seventh round). The text is cut where it turns to the fact's own subject (a word of
    the user's, the person's name). `seen`: {cue: continuation tokens} of earlier writes,
    checked in one teacher-forced pass (probes.generate's drafts) instead of generated again;
    updated here."""
    cues = relations.spaced(relations.others_wordings(fact)[0], CONTINUED)
    if not cues:
        return []
    ids = [probes.raw_ids(tokenizer, c) for c in cues]
    texts = probes.generate(model, tokenizer, ids, max_tokens=CONTINUED_TOKENS,
                            drafts=[seen.get(c) for c in cues])
    enc = lambda s: tokenizer._tokenizer(s, add_special_tokens=False)["input_ids"]
    out = []
    for cue, p, text in zip(cues, ids, texts):
        seen[cue] = enc(text)
        cont = enc(until_own(fact, text))
        if cont:
            out.append(memit.Prompt(list(p) + cont, len(p) + len(cont),
                                    [(0, t) for t in range(len(p), len(p) + len(cont))]))
    return out


def unprefixed(prompts, prefixes):
    """render's prompts without the cue's prefixed copies — the bare statement cue, then the
    questions (render puts the bare cue first, then one copy per prefix, then the questions)."""
    return [prompts[0]] + prompts[1 + len(prefixes):]


def told_prompts(fact: Fact, tokenizer, prefixes, system_prompt, n_questions):
    """Every token of a memory's own prompts (its bare statement cue and its chat questions,
    each with its answer; render), keyed at every position: where a later memory's neuron must
    stay closed, not only at this one's anchors. A unit keyed at the user's "I" after "gym"
    ("The gym I go to") opened at the "I" of "The instrument I play is the" — an earlier
    memory's cue, but not its anchor (docs/editing.md, fortieth round)."""
    prompts = render(fact, tokenizer, prefixes, system_prompt, n_questions, unit=True)[0]
    return [memit.Prompt(p.ids, len(p.ids), [(0, t) for t in range(len(p.ids))])
            for p in unprefixed(prompts, prefixes)]


def until_own(fact: Fact, text: str) -> str:
    """text up to where it speaks of the fact's own subject: one of the user's words for the
    user's facts, the person's name for someone else's."""
    m = (OWNED if fact.is_self else relations.word(fact.subject)).search(text)
    return text[: m.start()] if m else text


def _variant_keys(fact: Fact, tokenizer, system_prompt=None):
    """(ids, keys, is a chat question) of each further wording whose anchor occurs in it: the
    family's other statement cues ("My cat is called", "Xaver drives a": render writes the
    first only) at the unit's anchors, then relations.variants."""
    family = [(c, relations.anchors(fact, unit=True)) for c in relations.cues(fact)[1:]]
    for text, anchors in family + relations.variants(fact):
        chat = text.endswith("?")
        full = chat_text(tokenizer, text, system_prompt) if chat else text
        ids, keys = _find_keys(full, full.rfind(text), anchors, tokenizer, not chat,
                               fact.is_self)
        if keys:
            yield ids, keys, chat


def variant_prompts(fact: Fact, tokenizer, system_prompt=None):
    """Key positions of the fact's further wordings (_variant_keys: "What's my mom called?",
    "The phone I use is", "Xaver drives a"): a memory neuron's gate opens there too."""
    return [memit.Prompt(ids, len(ids), keys)
            for ids, keys, _ in _variant_keys(fact, tokenizer, system_prompt)]


def variant_cues(fact: Fact, tokenizer):
    """The fact's further statement cues with its object ("My favourite team is" + " Ajax"):
    what δ is trained on again once the unit's gate is known (as_deployed)."""
    obj = tokenizer._tokenizer(" " + fact.object, add_special_tokens=False)["input_ids"]
    return [memit.Prompt(ids + obj, len(ids), keys)
            for ids, keys, chat in _variant_keys(fact, tokenizer) if not chat]


def _keyed(texts, anchors, tokenizer):
    """KL prompts: each text (no target) keyed at its anchors, those with one."""
    out = []
    for text in texts:
        ids, keys = _find_keys(text, 0, anchors, tokenizer, True)
        if keys:
            out.append(memit.Prompt(ids, len(ids), keys))
    return out


def kl_prompts(fact: Fact, tokenizer, anchors):
    """'<anchor> is a' style prompts: the subject's general meaning should not change."""
    return _keyed([f"{a[0].upper()}{a[1:]} is a" for a in anchors[:1]], anchors[:1], tokenizer)


def about_prompts(fact: Fact, tokenizer, anchors):
    """The other families' cues said of the fact's owner (relations.about: "Aria works as a"
    for "Aria lives in Ghent"), keyed at the owner: a memory keyed at a name is there on
    every sentence about that person, so its δ is searched to leave their next token as it
    was (the KL term, weight kl_about). MEMIT's: a memory neuron's anchors, after the name
    (relations.anchors), do not occur in these cues, so it has none."""
    return _keyed(relations.about(fact), anchors, tokenizer)


# ------------------------------------------------------------------ the editor

@dataclass
class Edit:
    id: str
    fact: Fact
    factors: dict              # layer -> (A float16 (d_out, n), B float16 (d_k, n))
    keys: dict                 # layer -> K (n, d_k) float16, protected (K_p) from later edits
    z: np.ndarray | None = None  # (n, d) float32: the wanted layer-L output at each anchor
    nll: float = 0.0           # final v* loss
    seconds: float = 0.0
    created: float = field(default_factory=time.time)
    object_keys: dict | None = None  # layer -> keys at the object's own tokens, in K_p too;
                                     # read from the weights (None until then: not on disk)
    kind: str = "memit"        # or "neuron": factors {L: (g, u, d)} float16, keys {L: X} the
                               # anchor inputs its gate opens on (neurons.py)


def _float_linear(layer) -> nn.Linear:
    """A float32 nn.Linear computing what `layer` computes (dequantized if needed)."""
    if isinstance(layer, nn.QuantizedLinear):
        w = mx.dequantize(layer.weight, layer.scales, layer.get("biases"),
                          group_size=layer.group_size, bits=layer.bits)
    elif isinstance(layer, nn.Linear):
        w = layer.weight
    else:
        raise TypeError(f"cannot edit a {type(layer).__name__} down_proj")
    has_bias = "bias" in layer
    lin = nn.Linear(w.shape[1], w.shape[0], bias=has_bias)
    lin.weight = w.astype(mx.float32)
    if has_bias:
        lin.bias = layer.bias.astype(mx.float32)
    mx.eval(lin.parameters())
    return lin


CONTINUED = 4           # someone-else cues a unit's gate also sees continued
CONTINUED_TOKENS = 24   # (continued_prompts)
SHARED_OPEN = 0.5   # a unit this open (of its level) on a new fact's anchors shares them
OPEN_MIN = 0.02     # a unit's opening (of its level) below this adds nothing worth training
LEAK = 0.05         # a unit this open (of its level) on another memory's anchors leaks (settle)


def as_deployed(model, prompts, L, g, u, level):
    """The prompts with δ where a memory neuron (g, u) puts it: at every token it opens on,
    each with its opening (output / level) as the share — not at the anchors alone. The gate
    also opens on tokens near an anchor ("allergic" in "I am allergic to", keyed at "to"),
    which the v* search did not add δ at. Prompts it opens nowhere on are left out."""
    every = [memit.Prompt(p.ids, p.target_start, [(0, t) for t in range(len(p.ids))])
             for p in prompts]
    a = neurons.output(memit.mlp_inputs(model, [every], L), g, u) / level
    out, i = [], 0
    for p in prompts:
        at, i = a[i: i + len(p.ids)], i + len(p.ids)
        ts = [t for t in range(len(p.ids)) if abs(at[t]) > OPEN_MIN]
        if ts:
            out.append(memit.Prompt(p.ids, p.target_start, [(0, t) for t in ts],
                                    [float(at[t]) for t in ts]))
    return out


def _opens(edit: Edit, L, X) -> float:
    """How far a memory neuron opens on inputs X: its largest output there, as a share of its
    output at its own anchors."""
    g, u, _ = (v.astype(np.float64) for v in edit.factors[L])
    level = neurons.level(edit.keys[L], g, u)
    return float(np.max(neurons.output(X, g, u))) / level if len(X) and level > 0 else 0.0


def _floated(mlp, name) -> nn.Linear:
    """The MLP's `name` Linear as float32 (`_float_linear`, in place), unless it already is."""
    lin = mlp[name]
    if not isinstance(lin, nn.Linear) or lin.weight.dtype != mx.float32:
        setattr(mlp, name, _float_linear(lin))
    return mlp[name]


class Editor:
    """`stats` is {"prefixes", "cov" and/or "cinv"} or a function of the parts wanted that
    returns them (`stats.load`): loading saved edits needs none of them, so they are read (or
    computed) when first needed."""

    def __init__(self, model, tokenizer, hp: memit.Hparams, stats, system_prompt=None):
        self.model, self.tokenizer, self.hp = model, tokenizer, hp
        self._stats = dict(stats) if isinstance(stats, dict) else stats
        self.system_prompt = system_prompt
        self.edits: dict[str, Edit] = {}
        layers = memit._layers(model)
        self.base = {}
        for l in hp.layers:
            self.base[l] = mx.array(_floated(layers[l].mlp, "down_proj").weight)
        # evaluated now: a lazy array belongs to this thread's stream, and the REPL writes
        # edits on another thread (repl.Learner)
        mx.eval(list(self.base.values()))
        # K_p: the keys later edits keep off, per (edit id, "anchor" | "object"):
        # {layer: rows (n, d_k) float64}, and C⁻¹ rowsᵀ for the solve, made when first needed
        self._kp: dict[tuple, dict] = {}
        self._kp_w: dict[tuple, dict] = {}
        self.neuron_layer = hp.layers[-1]
        self._unit_base = None   # (W_gate, W_up) of the neuron layer, float32, made when needed
        self._continued = {}     # continued_prompts' continuations, by cue
        self._told = {}          # told_prompts' token ids and MLP inputs, by fact
        self._siblings = {}      # sibling_turn's objects, by cue
        # called between the steps of a write, where the model is as the active edits make it
        # and nothing is being computed: the REPL's Learner lets a reply run there
        self.pause = lambda: None

    def load_stats(self) -> dict:
        """{"prefixes", "cinv": {layer: C⁻¹}, ...}: read (or made) when first needed, once, so
        that no write pays for it. Statistics given as a function (`stats.load`) are read
        without C (2.7 GB for a 3B Llama's five layers): only C's principal directions
        (`nullspace` > 0) need it, and then ask for it alone."""
        if callable(self._stats):
            self._loader = self._stats
            with self.unedited():   # text the model writes: the base model's, whatever is loaded
                self._stats = self._stats(("prefixes", "negatives", "strangers")
                                          if self.neurons else ("prefixes", "cinv"))
        if "cinv" not in self._stats and "cov" in self._stats:
            self._stats["cinv"] = {l: memit.inverse(self._stats["cov"][l]) for l in self.hp.layers}
        return self._stats

    @property
    def neurons(self) -> bool:
        return self.hp.method == "neurons"

    def _neuron_stats(self, part: str, what: str):
        """The statistics `part` of the neuron layer, read (or made, from the base model)
        when first needed."""
        s = self.load_stats()
        if part not in s:
            if not hasattr(self, "_loader"):
                raise ValueError(f"the editor's statistics have no {what}")
            with self.unedited():
                s.update(self._loader((part,)))
        return s[part][self.neuron_layer]

    @property
    def negatives(self) -> np.ndarray:
        """Ordinary text's inputs of the neuron layer (stats "negatives")."""
        return self._neuron_stats("negatives", "ordinary-text inputs")

    def strangers(self, fact: Fact) -> np.ndarray:
        """The neuron layer's inputs over others' facts and the model's continuations of them
        (stats "strangers"), without those about the fact's own subject (a friend who is
        called as one of relations.STRANGERS)."""
        X, who = self._neuron_stats("strangers", "inputs of others' facts")
        own = [i for i, p in enumerate(relations.STRANGERS) if p.lower() == fact.subject.lower()]
        return X[~np.isin(who, own)] if own else X

    @property
    def cov(self) -> dict:
        s = self.load_stats()
        return s["cov"] if "cov" in s else self._loader(("cov",))["cov"]

    @property
    def prefixes(self) -> list:
        return self.load_stats()["prefixes"]

    def retune(self, **changes):
        """Change editor hyper-parameters in place (the cached principal directions and the
        other memories' prompt inputs follow them)."""
        for k, v in changes.items():
            if k not in memit.Hparams.__dataclass_fields__:
                raise ValueError(f"unknown editor setting {k!r}")
            setattr(self.hp, k, type(getattr(self.hp, k))(v))
        self.__dict__.pop("_principal", None)
        self._told = {}

    @property
    def principal(self) -> dict:
        """{layer: C's principal directions (rows)} held exactly by every update, when
        `nullspace` > 0 (AlphaEdit); {} otherwise."""
        if not hasattr(self, "_principal"):
            self._principal = {}
            if self.hp.nullspace > 0:
                cov = self.cov
                self._principal = {l: memit.principal(cov[l], self.hp.nullspace)
                                   for l in self.hp.layers}
        return self._principal

    @property
    def cinv(self) -> dict:
        s = self.load_stats()
        if "cinv" not in s:
            s.update(self._loader(("cinv",)))
        return s["cinv"]

    def protected(self) -> dict:
        """{layer: (K_p rows (r, d_k), C⁻¹K_pᵀ (d_k, r))} over every tracked block, in order."""
        for tag, keys in self._kp.items():
            if tag not in self._kp_w:
                self._kp_w[tag] = {l: self.cinv[l] @ K.T for l, K in keys.items()}
        out = {}
        for l in self.hp.layers:
            tags = [t for t in self._kp if l in self._kp[t] and len(self._kp[t][l])]
            if tags:
                out[l] = (np.concatenate([self._kp[t][l] for t in tags]),
                          np.concatenate([self._kp_w[t][l] for t in tags], axis=1))
        return out

    def _hold(self, protect=None) -> dict:
        """{layer: rows the update must leave exactly unchanged}: C's principal directions
        (nullspace > 0) and the `protect` keys."""
        hold = dict(self.principal)
        for l, K in (protect or {}).items():
            K = np.asarray(K, dtype=np.float64)
            hold[l] = np.concatenate([hold[l], K]) if l in hold else K
        return hold

    # -- weights
    def _refresh(self, l):
        """W_l = W₀ + [A₁ … A_n][B₁ … B_n]ᵀ over the active MEMIT edits (float32, one product,
        in creation order), then one unit per memory neuron appended (W_gate and W_up rows,
        W_down columns, in creation order): every path — write, add, revert, reload — computes
        these same weights."""
        parts = [e.factors[l] for e in self.edits.values() if l in e.factors and e.kind == "memit"]
        units = [e.factors[l] for e in self.edits.values() if l in e.factors and e.kind == "neuron"]
        mlp = memit._layers(self.model)[l].mlp
        w = self.base[l]
        if parts:
            A = mx.array(np.concatenate([a for a, _ in parts], axis=1)).astype(mx.float32)
            B = mx.array(np.concatenate([b for _, b in parts], axis=1)).astype(mx.float32)
            w = w + A @ B.T
        if units or (l == self.neuron_layer and self._unit_base is not None):
            g0, u0 = self._units_base()
            stack = lambda j: mx.array(np.stack([v[j] for v in units])).astype(mx.float32) \
                if units else None
            G, U, D = stack(0), stack(1), stack(2)
            mlp.gate_proj.weight = g0 if G is None else mx.concatenate([g0, G])
            mlp.up_proj.weight = u0 if U is None else mx.concatenate([u0, U])
            w = w if D is None else mx.concatenate([w, D.T], axis=1)
            mx.eval(mlp.gate_proj.weight, mlp.up_proj.weight)
        mlp.down_proj.weight = w
        mx.eval(w)

    @contextmanager
    def unedited(self):
        """The unedited model for the duration: every edited layer at W₀ (no memory neuron,
        no MEMIT factor), the edits put back after."""
        layers = memit._layers(self.model)
        try:
            for l, w in self.base.items():
                layers[l].mlp.down_proj.weight = w
            if self._unit_base is not None:
                mlp = layers[self.neuron_layer].mlp
                mlp.gate_proj.weight, mlp.up_proj.weight = self._unit_base
            yield self.model
        finally:
            for l in self.base:
                self._refresh(l)

    def _units_base(self):
        """(W_gate, W_up) of the neuron layer as float32 copies, made float on first use."""
        if self._unit_base is None:
            mlp = memit._layers(self.model)[self.neuron_layer].mlp
            if "bias" in mlp["gate_proj"] or "bias" in mlp["up_proj"]:
                raise TypeError("memory neurons need an MLP without biases")
            self._unit_base = tuple(mx.array(_floated(mlp, n).weight)
                                    for n in ("gate_proj", "up_proj"))
            mx.eval(self._unit_base)
        return self._unit_base

    def add(self, *edits: Edit):
        """Put existing edits (e.g. loaded from disk) into the weights. A factor whose shape
        does not fit the layer is an error, never skipped."""
        for edit in edits:
            if edit.kind == "neuron":
                if not self.neurons:
                    raise ValueError(f"edit {edit.id} is a memory neuron: it needs "
                                     "editor.method: neurons")
                self._check_unit(edit)
                continue
            for l, (A, B) in edit.factors.items():
                if l not in self.base:
                    raise ValueError(f"edit {edit.id} touches layer {l}, not an edited layer")
                d_out, d_k = self.base[l].shape
                if A.shape[0] != d_out or B.shape[0] != d_k or A.shape[1] != B.shape[1] \
                        or edit.keys[l].shape != (A.shape[1], d_k):
                    raise ValueError(f"edit {edit.id} layer {l}: factor shapes {A.shape}/"
                                     f"{B.shape} do not fit the weight {self.base[l].shape}")
        for edit in edits:
            self.edits[edit.id] = edit
            self._track_keys(edit, "anchor", +1)
            self._track_keys(edit, "object", +1)
        for l in sorted({l for e in edits for l in e.factors}):
            self._refresh(l)

    def _check_unit(self, edit: Edit):
        d_out = self.base[self.neuron_layer].shape[0]
        d = memit.mlp_width(self.model, self.neuron_layer)
        for l, vectors in edit.factors.items():
            if l != self.neuron_layer:
                raise ValueError(f"memory neuron {edit.id} is at layer {l}, the neuron layer "
                                 f"is {self.neuron_layer} (editor.layers[-1])")
            shapes = [np.shape(v) for v in vectors] + [np.shape(edit.keys[l])]
            if len(vectors) != 3 or shapes[:3] != [(d,), (d,), (d_out,)] \
                    or len(shapes[3]) != 2 or shapes[3][1] != d:
                raise ValueError(f"memory neuron {edit.id}: shapes {shapes} do not fit layer "
                                 f"{l} (input {d}, output {d_out})")

    def revert(self, edit_id: str) -> Edit:
        return self.revert_all([edit_id])[0]

    def revert_all(self, edit_ids) -> list[Edit]:
        """Take edits out of the weights (each touched layer recomputed once)."""
        out = [self.edits.pop(i) for i in list(edit_ids)]
        for edit in out:
            self._track_keys(edit, "anchor", -1)
            self._track_keys(edit, "object", -1)
        for l in sorted({l for e in out for l in e.factors}):
            self._refresh(l)
        return out

    # -- writing
    def write(self, fact: Fact, edit_id: str, companions=(), protect=None) -> Edit:
        """Write one fact (sequential path). `companions` (MEMIT): active facts that share its
        anchor; their prompts join the v* loss so the shared key keeps carrying them (a memory
        neuron finds its own: the units open on its anchors). `protect`:
        {layer: keys (n, d_k)} whose outputs must not move at all — the update is solved under
        ΔW Qᵀ = 0 for them (and for C's principal directions when `nullspace` > 0): a hard
        constraint, used by sleep's refresh."""
        if self.neurons:
            return self._write_unit(fact, edit_id)
        t0 = time.perf_counter()
        self.read_object_keys()
        prompts, anchors = render(fact, self.tokenizer, self.prefixes, self.system_prompt,
                                  self.hp.questions)
        train, weights = training_set(fact, prompts, companions, self.tokenizer, self.prefixes,
                                      self.system_prompt, self.hp)
        kl, near = self._kl(fact, anchors)
        delta, nll = memit.compute_delta(self.model, train, kl + near, self.hp, weights=weights,
                                         pause=self.pause, **self._kl_terms(kl, near))
        factors = {}
        set_delta = self._setter(factors, fact)
        used, z = memit.apply_update(self.model, prompts, len(anchors), delta, self.hp,
                                     self.cinv, self.protected(), self._hold(protect),
                                     set_delta, self._contrasts(fact))
        keys = {l: K.astype(np.float16) for l, K in used.items()}
        edit = Edit(edit_id, fact, factors, keys, z.astype(np.float32), nll,
                    time.perf_counter() - t0)
        self.edits[edit_id] = edit
        self._track_keys(edit, "anchor", +1)
        # make the weights exactly W₀ + Σ factors (the same sum a reload computes)
        for l in factors:
            self._refresh(l)
        self._protect_object([edit], prompts)
        return edit

    def _write_unit(self, fact: Fact, edit_id: str) -> Edit:
        """Write one fact as a memory neuron (neurons.py) at the neuron layer L: δ from the v*
        search (every prompt receives the whole δ: the unit is levelled), the gate trained
        open on the fact's anchor inputs and closed on ordinary text, on the same words said
        of someone else and on every other memory's anchors — except the companions' (same
        anchor, same inputs), whose units stay and whose prompts the v* search trains too.
        Nothing else in the weights changes, so no other memory needs protecting."""
        t0 = time.perf_counter()
        L = self.neuron_layer
        prompts, anchors = render(fact, self.tokenizer, self.prefixes, self.system_prompt,
                                  self.hp.questions, unit=True)
        pos = memit.mlp_inputs(self.model, [prompts], L)
        units = [e for e in self.edits.values() if e.kind == "neuron" and L in e.factors]
        # the companions are the units already open on this fact's anchors ("I live" of "I
        # live in Oslo" and of "I live on Elm Street": the same inputs), whatever their owner;
        # those of the same owner keyed elsewhere ("Greta's dog", "Greta lives") are not
        companions = [e.fact for e in units if _opens(e, L, pos) > SHARED_OPEN]
        train, _ = training_set(fact, prompts, companions, self.tokenizer, self.prefixes,
                                self.system_prompt, self.hp, unit=True)
        # the earlier turns: the fact's sibling's (asked now, with the edits there are) first
        sib = sibling_turn(fact, self.model, self.tokenizer, self.system_prompt, self._siblings)
        turns = ([sib] if sib else []) + EARLIER_TURNS
        self.pause()
        train += later_prompts(fact, self.tokenizer, self.system_prompt, 1,
                               turns[: self.hp.later_turns])
        kl, near = self._kl(fact, anchors)
        delta, nll = memit.compute_delta(self.model, train, kl + near, self.hp,
                                         pause=self.pause, **self._kl_terms(kl, near))
        hard = others_prompts(fact, self.tokenizer, self.system_prompt) + kl + \
            continued_prompts(fact, self.model, self.tokenizer, self._continued)
        self.pause()
        hard = memit.mlp_inputs(self.model, [hard], L) if hard else None
        more = variant_prompts(fact, self.tokenizer, self.system_prompt)
        more = memit.mlp_inputs(self.model, [more], L) if more else None
        # the questions later in a conversation: positives, not kept as keys
        later = later_prompts(fact, self.tokenizer, self.system_prompt, self.hp.questions,
                              turns)
        later = memit.mlp_inputs(self.model, [later], L) if later else None
        more_fit = more if later is None else \
            later if more is None else np.concatenate([more, later])
        strangers = [e for e in units if e.fact not in companions]
        others = [e.keys[L] for e in strangers]
        others = np.concatenate(others).astype(np.float32) if others else None
        told = self._told_rows(prompts, strangers)
        elsewhere = self.strangers(fact)
        self.pause()
        # a gate that cannot tell its anchors from the rest is fit with less: without the
        # anchors after earlier turns (they pulled it off the anchors themselves), then
        # without others' facts (the anchors lie among them) — seen in tiny random models,
        # never in the default one
        tries = [(more_fit, elsewhere)] + ([(more, elsewhere)] if more_fit is not more else []) \
            + [(more, None)]
        for i, (positives, strange) in enumerate(tries):
            try:
                g, u, level = neurons.fit(pos, self.negatives, hard, others, positives, told,
                                          strange)
                break
            except ValueError:
                if i == len(tries) - 1:
                    raise
        self.pause()
        # δ again, added where the unit opens and as far as it opens (from the δ found), and
        # on the further statement cues it opens on too
        deployed = as_deployed(self.model, train + variant_cues(fact, self.tokenizer), L,
                               g, u, level)
        if deployed:
            kl, near = (as_deployed(self.model, ps, L, g, u, level) for ps in (kl, near))
            delta, nll = memit.compute_delta(self.model, deployed, kl + near, self.hp,
                                             init=delta, pause=self.pause,
                                             **self._kl_terms(kl, near))
        if more is not None:
            pos = np.concatenate([pos, more])
        vectors = tuple(v.astype(np.float16) for v in (g, u, delta / level))
        if not all(np.isfinite(v).all() for v in vectors):
            raise FloatingPointError(f"memory neuron for {fact} overflowed float16")
        edit = Edit(edit_id, fact, {L: vectors}, {L: pos.astype(np.float16)}, None, nll,
                    time.perf_counter() - t0, object_keys={}, kind="neuron")
        self._check_unit(edit)
        self.edits[edit_id] = edit
        self._refresh(L)
        return edit

    def _told_rows(self, prompts, units):
        """The MLP inputs at every token of the other memories' own prompts (told_prompts),
        from the first token where each differs from all of this fact's prompts (the chat
        template and "My" are everyone's). Inputs of the neuron layer do not depend on any
        unit, so each fact's are read once and kept (while the fact is in memory)."""
        live = {e.fact for e in self.edits.values()}
        self._told = {f: rows for f, rows in self._told.items() if f in live}
        todo = [e for e in units if e.fact not in self._told]
        if todo:
            ps = {e.id: told_prompts(e.fact, self.tokenizer, self.prefixes, self.system_prompt,
                                     self.hp.questions) for e in todo}
            inputs = memit.mlp_inputs(self.model, [[p for e in todo for p in ps[e.id]]],
                                      self.neuron_layer)
            at = 0
            for e in todo:
                self._told[e.fact] = []
                for p in ps[e.id]:
                    self._told[e.fact].append(
                        (p.ids, inputs[at: at + len(p.ids)].astype(np.float16)))
                    at += len(p.ids)
        own = [p.ids for p in prompts]
        rows = [X[max(memit.shared([ids, o]) for o in own):]
                for e in units for ids, X in self._told[e.fact]]
        rows = [r for r in rows if len(r)]
        return np.concatenate(rows) if rows else None

    def _kl(self, fact: Fact, anchors):
        """The v* search's KL prompts: '<anchor> is a' (kl_factor) and the other families'
        cues said of the fact's owner (about_prompts, kl_about)."""
        return ((kl_prompts(fact, self.tokenizer, anchors) if self.hp.kl_factor > 0 else []),
                (about_prompts(fact, self.tokenizer, anchors) if self.hp.kl_about > 0 else []))

    def _kl_terms(self, kl, near) -> dict:
        """compute_delta's KL arguments for the prompts kl + near: each one's weight, and the
        about cues held to kl_stop ('<anchor> is a' is not: held, it made the user's own
        facts ~3.5× slower, docs/editing.md thirty-third round)."""
        return {"kl_weights": [self.hp.kl_factor] * len(kl) + [self.hp.kl_about] * len(near),
                "kl_held": [False] * len(kl) + [True] * len(near)}

    def _protect_object(self, edits: list, prompts=None):
        """Read the keys at the edits' object tokens from the current weights
        (`object_prompts`; all edits' prompts in one `memit.read`) and add them to K_p: later
        edits keep off them, so the object stays spelt right. Kept in memory only: a loaded
        edit's are read again, from the weights it loads into, before the next write
        (`read_object_keys`). `prompts`: the one edit's rendered prompts, if at hand."""
        assert prompts is None or len(edits) == 1
        at, spans, total = [], [], 0      # spans: (edit, its first anchor, its anchor count)
        for edit in edits:
            edit.object_keys = {}
            if not self.hp.protect_objects:
                continue
            ps = prompts or render(edit.fact, self.tokenizer, self.prefixes, self.system_prompt,
                                   self.hp.questions)[0]
            mine, n = object_prompts(edit.fact, ps, self.tokenizer)
            if mine:
                at += [memit.Prompt(p.ids, p.target_start, [(total + j, t) for j, t in p.keys])
                       for p in mine]
                spans.append((edit, total, n))
                total += n
        if at:
            keys = memit.read(self.model, at, total, key_layers=self.hp.layers)[0]
            for edit, first, n in spans:
                edit.object_keys = {l: K[first: first + n].astype(np.float16)
                                    for l, K in keys.items()}
        for edit in edits:
            self._track_keys(edit, "object", +1)

    def read_object_keys(self):
        """Read the object keys of every edit that has none yet (edits loaded from disk)."""
        todo = [e for e in self.edits.values() if e.object_keys is None and e.kind == "memit"]
        if todo:
            self._protect_object(todo)

    def probe_keys(self, facts) -> dict:
        """{layer: keys (n, d_k)} read from the current weights at every anchor position of the
        facts' audit probes (probes.fact_probes: the bare statement cue and the first
        AUDIT_QUESTIONS chat questions, with their answers), one row per position. Sleep's
        refresh holds these exactly: a memory's mean key is not where its audit reads it."""
        rows = []   # (token ids up to the position, the position)
        for fact in facts:
            prompts = render(fact, self.tokenizer, self.prefixes, self.system_prompt,
                             self.hp.questions)[0]
            audited = unprefixed(prompts, self.prefixes)[: 1 + probes.AUDIT_QUESTIONS]
            rows += [(p.ids[: t + 1], t) for p in audited for _, t in p.keys]
        out = {l: [np.zeros((0, self.base[l].shape[1]))] for l in self.hp.layers}
        for i in range(0, len(rows), 48):
            part = [memit.Prompt(ids, 0, [(j, t)]) for j, (ids, t) in enumerate(rows[i: i + 48])]
            keys = memit.read(self.model, part, len(part), key_layers=self.hp.layers)[0]
            for l in self.hp.layers:
                out[l].append(keys[l])
        return {l: np.concatenate(v) for l, v in out.items()}

    def _contrasts(self, fact):
        return contrast_prompts(fact, self.tokenizer) if self.hp.contrast > 0 else []

    def _track_keys(self, edit: Edit, which: str, sign: int):
        """Add (+1) or remove (-1) an edit's anchor or object keys from K_p (object keys None:
        not read yet, nothing to add)."""
        tag = (edit.id, which)
        self._kp.pop(tag, None)
        self._kp_w.pop(tag, None)
        keys = edit.keys if which == "anchor" else edit.object_keys
        if sign > 0 and keys and edit.kind == "memit":
            self._kp[tag] = {l: K.astype(np.float64) for l, K in keys.items()}

    def _setter(self, factors: dict, what):
        """set_delta for memit: store A, B as float16 and add exactly those values to W."""
        def set_delta(l, A, B):
            A16, B16 = A.astype(np.float16), B.astype(np.float16)
            if not (np.isfinite(A16).all() and np.isfinite(B16).all()):
                raise FloatingPointError(f"edit for {what} overflowed float16 at layer {l}")
            factors[l] = (A16, B16)
            lin = memit._layers(self.model)[l].mlp.down_proj
            upd = mx.array(A16).astype(mx.float32) @ mx.array(B16).astype(mx.float32).T
            if upd.shape != lin.weight.shape:
                raise ValueError(f"edit shape {upd.shape} != weight shape {lin.weight.shape} "
                                 f"at layer {l}")
            lin.weight = lin.weight + upd
            mx.eval(lin.weight)
        return set_delta

    def rehearse(self, edit_id: str, wordings, steps: int, answered=()) -> Edit:
        """Sleep's rehearsal of a memory neuron: its δ searched again (from the δ it has, at
        most `steps` Adam steps) on the prompts it was written with, its further statement cues
        and `wordings` — (text, answer's beginning or None for a statement cue) it should also
        answer (relations.every_wording) — each where and as far as its gate opens
        (as_deployed; the gate, the level and every other unit stay as they are). `answered`:
        wordings it answers now, held to their answers too (the search moves δ; what it
        carried and was not searched on can be lost). The other memories' prompts that this
        gate opens on join the search with their own answers (their share of δ is their
        opening), so that a stronger δ does not speak over them. Returns the edit replaced
        (Editor.swap puts it back). A ValueError, before any search, when the gate opens on
        none of `wordings` (only a new gate could reach them)."""
        L = self.neuron_layer
        old = self.edits[edit_id]
        if old.kind != "neuron":
            raise ValueError(f"edit {edit_id} is not a memory neuron: nothing to rehearse")
        fact = old.fact
        g, u, d = (v.astype(np.float64) for v in old.factors[L])
        level = neurons.level(old.keys[L], g, u)
        enc_t = lambda s: self.tokenizer._tokenizer(s, add_special_tokens=False)["input_ids"]
        prompts, anchors = render(fact, self.tokenizer, self.prefixes, self.system_prompt,
                                  self.hp.questions, unit=True)
        train = prompts + variant_cues(fact, self.tokenizer)

        def worded(text, answer):
            if answer is None:
                ids = self.tokenizer.encode(text)
                return memit.Prompt(ids + enc_t(" " + fact.object), len(ids), [])
            chat = chat_text(self.tokenizer, text, self.system_prompt)
            return memit.Prompt(enc_t(chat + relations.full_answer(fact, answer)),
                                len(enc_t(chat)), [])
        # (the MLP inputs of layer L do not depend on its units: read once, unit in or out)
        asked = as_deployed(self.model, [worded(*w) for w in wordings], L, g, u, level)
        if not asked:
            raise ValueError(f"memory {edit_id}'s gate is shut on every wording given: "
                             "its value cannot reach them")
        trained = {tuple(p.ids) for p in train}
        held = [p for p in map(lambda w: worded(*w), answered) if tuple(p.ids) not in trained]
        # the other memories whose anchor inputs this gate opens on, with their own answers
        near = [p for e in self.edits.values() if e.kind == "neuron" and e.id != edit_id
                and _opens(old, L, e.keys[L].astype(np.float64)) > LEAK
                for p in render(e.fact, self.tokenizer, [], self.system_prompt,
                                self.hp.questions, unit=True)[0]]
        # the search runs without the unit: its value column zero (it then adds nothing)
        self.swap(replace(old, factors={L: (*old.factors[L][:2], np.zeros_like(d, np.float16))}))
        try:
            deployed = as_deployed(self.model, train, L, g, u, level) + asked + \
                as_deployed(self.model, held, L, g, u, level) + \
                as_deployed(self.model, near, L, g, u, level)
            kl, about = self._kl(fact, anchors)
            kl, about = (as_deployed(self.model, ps, L, g, u, level) for ps in (kl, about))
            hp = replace(self.hp, v_steps=min(steps, self.hp.v_steps))
            delta, nll = memit.compute_delta(self.model, deployed, kl + about, hp,
                                             init=d * level, **self._kl_terms(kl, about))
            value = (delta / level).astype(np.float16)
            if not np.isfinite(value).all():
                raise FloatingPointError(f"rehearsed memory neuron {edit_id} overflowed float16")
        except BaseException:
            self.swap(old)
            raise
        self.swap(replace(old, factors={L: (*old.factors[L][:2], value)}, z=None, nll=nll))
        return old

    def swap(self, edit: Edit) -> Edit:
        """Put `edit` in the place of the active edit with its id (its place in creation order
        kept, so the layers are built as before); returns the edit it replaced."""
        old = self.edits[edit.id]
        if edit.kind == "neuron":
            self._check_unit(edit)
        for which in ("anchor", "object"):
            self._track_keys(old, which, -1)
        self.edits[edit.id] = edit
        for which in ("anchor", "object"):
            self._track_keys(edit, which, +1)
        for l in sorted(set(old.factors) | set(edit.factors)):
            self._refresh(l)
        return old

    def settle(self) -> list[str]:
        """Sleep's consolidation of memory neurons. A unit's gate is trained closed on the
        anchors of the memories written before it, never on those of later ones: a gate may
        open on a later memory's anchors (a share > LEAK of its level, below SHARED_OPEN —
        above, the two share an anchor, as companions do). Each such gate is shut there by
        the least change ordinary text notices (neurons.shut, M = E[xxᵀ] over the negatives)
        that leaves it exactly as it was at its own anchors; the change is kept only if the
        gate then opens on no more ordinary-text inputs than before. Returns the ids changed
        (new Edit objects: the ones replaced stay as they were, for a rollback)."""
        L = self.neuron_layer
        units = [e for e in self.edits.values() if e.kind == "neuron" and L in e.factors]
        if len(units) < 2:
            return []
        N = self.negatives.astype(np.float64)
        M = N.T @ N / len(N)
        M += 1e-6 * np.trace(M) / len(M) * np.eye(len(M))
        vec = {e.id: [v.astype(np.float64) for v in e.factors[L]] for e in units}
        keys = {e.id: e.keys[L].astype(np.float64) for e in units}
        lev = {e.id: neurons.level(keys[e.id], *vec[e.id][:2]) for e in units}
        share = lambda i, X: neurons.output(X, *vec[i][:2]) / lev[i] if lev[i] > 0 \
            else np.zeros(len(X))
        changed = []
        for e in units:
            g, u, _ = vec[e.id]
            closed = []
            for f in units:
                if f is e:
                    continue
                o = share(e.id, keys[f.id])
                if o.max() > SHARED_OPEN or share(f.id, keys[e.id]).max() > SHARED_OPEN:
                    continue     # one anchor, two memories: companions
                closed.append(keys[f.id][o > LEAK])
            closed = np.concatenate(closed) if closed else np.zeros((0, len(g)))
            if not len(closed):
                continue
            g2 = neurons.shut(g, keys[e.id], closed, M)
            noisy = lambda gate: int((neurons.output(N, gate, u) / lev[e.id] > LEAK).sum())
            if not np.isfinite(g2).all() or noisy(g2) > noisy(g):
                continue
            vectors = (g2.astype(np.float16), *e.factors[L][1:])
            if not np.isfinite(vectors[0]).all():
                continue
            self.edits[e.id] = Edit(e.id, e.fact, {L: vectors}, e.keys, e.z, e.nll, e.seconds,
                                    e.created, object_keys={}, kind="neuron")
            changed.append(e.id)
        if changed:
            self._refresh(L)
        return changed

    def consolidate(self) -> list[str]:
        """Rewrite every edit that carries its target z in one batch MEMIT solve
        (memit.consolidate), replacing the sequential wake edits' factors. Facts with the same
        owner (Fact.owner: a person, "my sister") share that key; all of them take the newest
        one's z, which was trained to carry the earlier ones (the companions in `write`). An
        edit whose fact now renders to a different number of anchors than its stored z
        (learned by an older version) is left in place. Returns the ids rewritten."""
        if any(e.kind == "neuron" for e in self.edits.values()):
            return []   # memory neurons have no joint solve; MEMIT keys would see their units
        newest = {}
        for i, e in self.edits.items():
            if e.z is not None and e.fact.owner():
                newest[e.fact.owner()] = i
        ids, targets = [], []
        for i, e in self.edits.items():
            if e.z is None:
                continue
            prompts, anchors = render(e.fact, self.tokenizer, self.prefixes, self.system_prompt,
                                      self.hp.questions)
            z = self.edits[newest[e.fact.owner()]].z if e.fact.owner() else e.z
            if len(anchors) != len(z):
                # learned when the fact's family had other anchors (an older version):
                # its wake edit stays as it is, and its keys stay protected (K_p)
                continue
            ids.append(i)
            targets.append(memit.Target(prompts, z.astype(np.float64), self._contrasts(e.fact)))
        if not ids:
            return []
        self.read_object_keys()
        old = {e.id: e for e in self.revert_all(ids)}
        for e in old.values():      # their objects' tokens stay in K_p through the solve
            self._track_keys(e, "object", +1)
        applied = {}
        try:
            parts = memit.consolidate(self.model, targets, self.hp, self.cinv,
                                      self._setter(applied, "consolidation"), self.protected(),
                                      self._hold())
        except BaseException:
            for e in old.values():
                self._track_keys(e, "object", -1)
            for l in self.hp.layers:
                self._refresh(l)
            self.add(*old.values())
            raise
        for i, p in zip(ids, parts):
            e = old[i]
            factors = {l: (A.astype(np.float16), B.astype(np.float16))
                       for l, (A, B, _) in p.items()}
            keys = {l: K.astype(np.float16) for l, (_, _, K) in p.items()}
            self.edits[i] = Edit(i, e.fact, factors, keys, e.z, e.nll, e.seconds, e.created,
                                 e.object_keys)
            self._track_keys(self.edits[i], "anchor", +1)
        for l in self.hp.layers:
            self._refresh(l)
        return ids
