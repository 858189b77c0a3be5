"""The MEMIT math and the editor on a tiny random Llama built in-process."""
from collections import Counter

import numpy as np
import mlx.core as mx
import mlx.nn as nn
import pytest

from sleepllm import memit, probes, relations
from sleepllm.config import load_config
from sleepllm.editor import Editor, render, training_set
from sleepllm.relations import Fact

TINY_EDITOR = {"method": "memit", "layers": [1, 2], "v_steps": 12, "v_lr": 0.5, "prefixes": 1,
               "cov_tokens_per_dk": 4, "kl_factor": 0.0625, "kl_about": 1.0}


def tiny_cfg(**editor):
    return load_config(None, {f"editor.{k}": v for k, v in {**TINY_EDITOR, **editor}.items()})


def make_editor(model, tok, **editor):
    from sleepllm import stats
    from sleepllm.config import cache_dir
    from sleepllm.model import fingerprint

    cfg = tiny_cfg(**editor)
    hp = memit.Hparams.from_config(cfg["editor"])
    parts = ("prefixes", "negatives", "strangers") if hp.method == "neurons" else \
        ("prefixes", "cov")
    got = stats.load(model, tok, hp.layers, cache_dir(), fingerprint(model),
                     cfg["editor"]["cov_tokens_per_dk"], parts=parts)
    return Editor(model, tok, hp, {**got, "prefixes": got["prefixes"][:1]})


def weights(model, layers):
    return {l: np.array(memit._layers(model)[l].mlp.down_proj.weight) for l in layers}


def test_solve_is_memits_least_squares_and_holds_protected_keys_exactly():
    """solve (Woodbury from C⁻¹) = the direct MEMIT solve M⁻¹Kᵀ, M = λC + K_pᵀK_p + KᵀK; with
    rows Q held, ΔW Qᵀ = 0 exactly and the update is the constrained least-squares one."""
    rng = np.random.default_rng(0)
    d_k, d_out, n = 24, 16, 3
    K = rng.standard_normal((n, d_k))
    R = rng.standard_normal((n, d_out))
    Kp = rng.standard_normal((5, d_k))
    A = rng.standard_normal((d_k, 200))
    C = A @ A.T / 200
    Ci = memit.inverse(C)
    M = 2.0 * C + Kp.T @ Kp + K.T @ K
    np.testing.assert_allclose(memit.solve(K, Ci, 2.0, Kp), np.linalg.solve(M, K.T),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(memit.solve(K, Ci, 2.0, Kp, Ci @ Kp.T),
                               np.linalg.solve(M, K.T), rtol=1e-9, atol=1e-12)
    # λ→0: MEMIT interpolates the targets exactly
    B = memit.solve(K, Ci, lam=1e-9)
    np.testing.assert_allclose((R.T @ B.T) @ K.T, R.T, atol=1e-5)
    # held keys (a repeated one included) do not move at all ...
    Q = rng.standard_normal((4, d_k))
    Q = np.concatenate([Q, Q[:1]])
    B = memit.solve(K, Ci, 2.0, Kp, Q=Q)
    dW = R.T @ B.T
    np.testing.assert_allclose(dW @ Q.T, 0.0, atol=1e-9)
    # ... and ΔW is the least-squares update under that constraint: in the basis N of Q's
    # null space, ΔW = X Nᵀ with X = Rᵀ K N (Nᵀ M N)⁻¹
    N = np.linalg.svd(Q)[2][np.linalg.matrix_rank(Q):].T
    X = R.T @ K @ N @ np.linalg.inv(N.T @ M @ N)
    np.testing.assert_allclose(dW, X @ N.T, rtol=1e-7, atol=1e-9)


def test_principal_directions_are_the_high_variance_ones():
    C = np.diag([10.0, 5.0, 0.01, 0.001])
    rows = memit.principal(C, 0.02)
    np.testing.assert_allclose(np.abs(rows.T @ rows), np.diag([1.0, 1.0, 0, 0]), atol=1e-12)
    assert memit.principal(C, 0.0) is None


def test_render_finds_anchor_keys(tiny):
    model, tok = tiny
    prompts, anchors = render(Fact("user", "name", "Rex", "dog"), tok, ["Because it rained"])
    assert anchors == ["dog"]
    assert len(prompts) >= 3
    for p in prompts:
        assert p.keys and any(t < p.target_start for _, t in p.keys)
        assert tok.decode([p.ids[t] for _, t in p.keys][-1:]).endswith("g")  # byte tokens


def test_every_question_template_names_an_anchor_in_the_question():
    """A key that only the answer names ("Where do I live?" -> "You live in ...") sits after
    the tokens the model must produce first, so the edit cannot make it start that answer. A
    key of the user's fact comes after the user's own word: "car" in "The car I drive" is read
    before the text says whose car it is ("The car Anna drives" begins the same)."""
    import re

    from sleepllm.editor import OWNED

    def named(text, anchors, own):
        """An anchor in text — for the user's fact, after (or with) one of the user's words."""
        return any(not own or OWNED.search(text, 0, m.end())
                   for a in anchors
                   for m in re.finditer(r"(?<!\w)" + re.escape(a) + r"(?!\w)", text, re.I))

    nouns = {"habit": ["collect", "listen to", "shop at"]}    # a habit's noun is its verb
    for family in relations.FAMILIES:
        for subject in ("user", "Aria", "my sister"):
            for noun in nouns.get(family, ["thing"]):
                fact = Fact(subject, family, "X", noun)
                anchors = relations.anchors(fact)
                for question, _ in relations.questions(fact):
                    assert named(question, anchors, fact.is_self), (family, question, anchors)
                # the statement cues name one too (render puts the first first: the v* search
                # trains it with `raw_share` of δ, a fact about the user)
                for cue in relations.cues(fact):
                    assert named(cue, anchors, fact.is_self), (family, cue, anchors)
    # every further wording (relations.variants), nouns and their other words included
    nouns = ["thing", "phone", "mother", "movie", "color"]
    for family in relations.FAMILIES:
        for noun in nouns:
            for text, anchors in relations.variants(Fact("user", family, "X", noun)):
                assert named(text, anchors, True), (family, noun, text, anchors)


def test_a_plain_attribute_is_keyed_at_the_users_i_after_its_noun_whatever_verb_follows(tiny):
    """"The gym I go to is called", "What street do I live on?": the user's verb is not known
    ("I train at Steelhaus gym"), so the attribute family's relative clause and question are
    keyed at "I" after the noun — the text before the verb, which every verb shares. The v*
    search trains "Which gym do I have?" (the family's second question); the gate opens on
    "The gym I have is" (a further wording); both keys are a beginning of the unseen wordings."""
    from sleepllm.editor import variant_prompts

    _, tok = tiny
    fact = Fact("user", "attribute", "Steelhaus", "gym")
    prompts, anchors = render(fact, tok, [], None, 3, unit=True)
    assert "gym do I" in anchors
    keyed = [p.ids[: t + 1] for p in prompts for _, t in p.keys]
    # the probes' own encodings of the unseen wordings (what `sleepllm eval` asks)
    what = list(probes.chat_ids(tok, "What gym do I go to?"))
    assert not any(what[: len(k)] == k for k in keyed)     # "What gym" is not "Which gym"
    which = list(probes.chat_ids(tok, "Which gym do I go to?"))
    assert any(which[: len(k)] == k and tok.decode(k).endswith("gym do I") for k in keyed)
    unseen = list(probes.raw_ids(tok, "The gym I go to is called"))
    keyed = [p.ids[: t + 1] for p in variant_prompts(fact, tok) for _, t in p.keys]
    assert any(unseen[: len(k)] == k and tok.decode(k).endswith("The gym I") for k in keyed)
    # said of someone else, the same clause is a hard negative
    assert "The gym she has is" in relations.others_wordings(fact)[0]


def test_a_persons_gate_is_shut_on_rarer_names_and_on_names_that_begin_like_theirs():
    """Beside the common one-token names, a gate about Katarina is shut on the same words said
    of rarer names of several tokens and of made-up names sharing her name's first letters
    ("Kalinda lives in the city of" opened Katarina's unit; "Wilbur" Rasmus's car's)."""
    cues, questions = relations.others_wordings(Fact("Katarina", "lives_in", "Ghent"))
    said = {c.split()[0] for c in cues}
    assert set(relations.OTHER_NAMES) - {"my friend"} <= said
    assert set(relations.RARE_NAMES) <= said
    near = relations.near_names("Katarina")
    assert len(near) == len(relations.NAME_ENDINGS) and all(n[:2] == "Ka" for n in near)
    assert set(near) <= said and "Katarina" not in said
    assert "Where does Kandra live?" in questions
    assert relations.near_names("Tom") == [] and relations.near_names("my sister") == []


def test_a_relative_is_asked_about_as_mine_and_answered_as_yours(tiny):
    """ "My sister lives in Lyon": the cue and question say "my sister", the trained answer
    "Your sister lives in Lyon."; it shares the key of "my sister's name is ..." (one owner)."""

    model, tok = tiny
    fact = Fact("my sister", "lives_in", "Lyon")
    assert relations.cues(fact)[0].startswith("My sister lives in")
    q, a = relations.questions(fact)[0]
    assert q == "Where does my sister live?" and a == "Your sister lives in"
    assert relations.describe(fact) == "your sister lives in the city of → Lyon"
    prompts, anchors = render(fact, tok, ["Because it rained"])
    assert anchors == ["my sister"] and all(p.keys for p in prompts)
    assert fact.owner() == Fact("user", "name", "Delphine", "sister").owner() == "my sister"
    assert Fact("user", "lives_in", "Oslo").owner() is None


def test_the_same_words_said_of_someone_else_are_grammatical_and_closed_from_where_they_differ(
        tiny):
    """A memory neuron's hard negatives: the fact's cues and questions with another subject,
    verbs made to agree ("I am" -> "She is", "do I" -> "does she"), a named person's fact with
    another name and the other things said of that person ("Greta works at" for her job); every
    token from the first one that differs from the fact's own wording."""
    from sleepllm.editor import others_prompts

    cues, questions = relations.others_wordings(Fact("user", "allergic_to", "sesame"))
    assert {"She is allergic to", "They are allergic to", "Anna is allergic to",
            "Many people are allergic to"} <= set(cues)
    assert {"What is she allergic to?", "What are they allergic to?"} <= set(questions)
    cues, questions = relations.others_wordings(Fact("user", "studies", "Finnish"))
    assert "The subject she studies is" in cues and "What does he study?" in questions
    assert relations.said_of("What do I do for a living?", "he", "him", "his", False) == \
        "What does he do for a living?"
    cues, _ = relations.others_wordings(Fact("user", "name", "Rex", "dog"))
    assert {"Her dog's name is", "My friend's dog's name is"} <= set(cues)
    cues, _ = relations.others_wordings(Fact("Xaver", "drives", "Saab"))
    assert "The car Anna drives is a" in cues and not any("Xaver" in c for c in cues)

    model, tok = tiny
    enc = lambda s: tok._tokenizer(s, add_special_tokens=True)["input_ids"]
    dog = Fact("user", "name", "Rex", "dog")
    prompts = {tok.decode(p.ids): p for p in others_prompts(dog, tok)}
    her, own = enc("Her dog's name is Rex."), enc("My dog's name is")    # with the answer
    first = memit.shared([her, own])
    assert [t for _, t in prompts[tok.decode(her)].keys] == list(range(first, len(her)))
    assert relations.about_wordings(dog) == ([], [])       # the user's facts: keyed apart

    # a named person's: also the other things said of them, from where the wording differs
    cues, questions = relations.about_wordings(Fact("Greta", "works_as", "farrier"))
    assert {"Greta works at", "Greta lives in the city of"} <= set(cues)
    assert "Greta works as a" not in cues
    assert "Greta's job is" not in cues      # the same thing in other words: the unit opens
    assert "Where does Greta live?" in questions
    job = Fact("Greta", "works_as", "farrier")
    prompts = {tok.decode(p.ids): p for p in others_prompts(job, tok)}
    at, own = enc("Greta works at"), enc("Greta works as a")
    first = memit.shared([at, own])
    assert 0 < first < len(at)
    assert [t for _, t in prompts[tok.decode(at)].keys] == list(range(first, len(at)))


def test_other_nouns_shut_a_memory_on_its_family_said_of_other_things(tiny):
    """The favourite drink's unit is shut on "My favorite fruit is" (from " fruit" on), the
    dog's on "My cat's name is": other nouns of the family, never the fact's own or a synonym."""
    from sleepllm.editor import others_prompts

    cues, questions = relations.other_nouns(Fact("user", "favorite", "mint tea", "drink"))
    assert len(cues) == relations.OTHER_NOUNS and "My favorite drink is" not in cues
    assert all(c.startswith("My favorite ") for c in cues) and len(questions) >= len(cues)
    cues, questions = relations.other_nouns(Fact("user", "name", "Hilde", "mother"))
    assert not any(w in t for t in cues + questions for w in ("mother", "mom", "mum"))
    cues, _ = relations.other_nouns(Fact("Greta", "name", "Rex", "dog"))
    assert cues and all(c.startswith("Greta's ") and " dog " not in c for c in cues)
    assert relations.other_nouns(Fact("user", "lives_in", "Oslo")) == ([], [])

    model, tok = tiny
    enc = lambda s: tok._tokenizer(s, add_special_tokens=True)["input_ids"]
    prompts = {tok.decode(p.ids): p for p in others_prompts(Fact("user", "name", "Rex", "dog"), tok)}
    cat, own = enc("My cat's name is"), enc("My dog's name is")
    assert [t for _, t in prompts[tok.decode(cat)].keys] == \
        list(range(memit.shared([cat, own]), len(cat)))


def test_continued_prompts_key_every_token_the_model_writes_after_a_cue(tiny):
    """A unit's gate is also shut on what the model writes after the fact said of someone else
    ("Her dog's name is" → " Max. He is a Labrador"): every continuation token is a key, none of
    the cue's, and the text stops where it turns to the fact's own subject."""
    from sleepllm.editor import CONTINUED, continued_prompts, until_own

    model, tok = tiny
    dog = Fact("user", "name", "Rex", "dog")
    seen = {}
    prompts = continued_prompts(dog, model, tok, seen)
    cues = relations.others_wordings(dog)[0]
    assert 0 < len(prompts) <= CONTINUED and len(seen) == CONTINUED
    for p in prompts:
        cue = next(c for c in seen if p.ids[: len(probes.raw_ids(tok, c))] ==
                   list(probes.raw_ids(tok, c)))
        assert cue in cues
        n = len(probes.raw_ids(tok, cue))
        assert [t for _, t in p.keys] == list(range(n, len(p.ids))) and p.target_start == len(p.ids)
    # the second write of the same cues checks the continuations it has seen: same prompts
    again = continued_prompts(dog, model, tok, seen)
    assert [p.ids for p in again] == [p.ids for p in prompts]

    assert until_own(dog, " Max. He is a Labrador. My dog is") == " Max. He is a Labrador. "
    assert until_own(dog, " Ivy. Her owner is") == " Ivy. Her owner is"     # "I" in a word
    greta = Fact("Greta", "drives", "Saab")
    assert until_own(greta, " Volvo, and Greta's is red.") == " Volvo, and "


def test_update_moves_the_residual_to_the_target_value(tiny):
    """v* lowers the target loss; the MEMIT layer loop then realises h_L + δ at the anchor."""
    model, tok = tiny
    ed = make_editor(model, tok, v_steps=15, weight_decay=0.0)
    fact = Fact("user", "name", "Rex", "dog")
    prompts, anchors = render(fact, tok, ed.prefixes)
    losses = []
    delta, _ = memit.compute_delta(model, prompts, [], ed.hp, log=lambda s, l, n: losses.append(n))
    assert losses[-1] < losses[0]
    L = ed.hp.layers[-1]
    _, h0 = memit.read(model, prompts, len(anchors), resid_layer=L)
    memit.apply_update(model, prompts, len(anchors), delta, ed.hp, ed.cinv,
                       {}, {}, lambda l, A, B: _add(model, l, A, B))
    _, h1 = memit.read(model, prompts, len(anchors), resid_layer=L)
    shift = (h1 - h0)[0]
    cos = shift @ delta / np.linalg.norm(shift) / np.linalg.norm(delta)
    assert cos > 0.9, cos


def _add(model, l, A, B):
    lin = memit._layers(model)[l].mlp.down_proj
    lin.weight = lin.weight + mx.array(A.astype(np.float32)) @ mx.array(B.astype(np.float32)).T


def test_revert_is_exact_and_edits_are_low_rank(tiny):
    model, tok = tiny
    ed = make_editor(model, tok)
    layers = ed.hp.layers
    w0 = weights(model, layers)
    fact = Fact("user", "name", "Rex", "dog")
    e = ed.write(fact, "a")
    w1 = weights(model, layers)
    assert any(np.abs(w1[l] - w0[l]).max() > 0 for l in layers)
    ed.write(Fact("Aria", "lives_in", "Ghent"), "b")
    ed.revert("b")
    for l in layers:
        np.testing.assert_allclose(weights(model, layers)[l], w1[l], atol=1e-6)
    ed.revert("a")
    for l in layers:
        np.testing.assert_allclose(weights(model, layers)[l], w0[l], atol=1e-6)
    for l, (A, B) in e.factors.items():   # float16 factors of rank = number of anchors
        assert A.dtype == np.float16 and B.dtype == np.float16 and A.shape[1] == B.shape[1] == 1


def test_mismatched_factors_are_an_error(tiny):
    model, tok = tiny
    ed = make_editor(model, tok)
    e = ed.write(Fact("user", "name", "Rex", "dog"), "a")
    ed.revert("a")
    l = ed.hp.layers[0]
    A, B = e.factors[l]
    e.factors[l] = (A[:-1], B)
    with pytest.raises(ValueError, match="do not fit"):
        ed.add(e)


def test_edited_layers_are_float32(tiny):
    model, tok = tiny
    import mlx.nn as nn

    d_k = memit.key_width(model, 1)
    memit._layers(model)[1].mlp.down_proj = nn.QuantizedLinear.from_linear(
        memit._layers(model)[1].mlp.down_proj, group_size=32, bits=8)
    memit._layers(model)[2].mlp.down_proj = nn.QuantizedLinear.from_linear(
        memit._layers(model)[2].mlp.down_proj, group_size=32, bits=4)
    # the statistics of a quantized model are sized by d_k, not by its packed columns
    assert memit.key_width(model, 1) == memit.key_width(model, 2) == d_k
    ed = make_editor(model, tok)
    assert all(C.shape == (d_k, d_k) for C in ed.cov.values())
    for l in ed.hp.layers:
        lin = memit._layers(model)[l].mlp.down_proj
        assert type(lin) is nn.Linear and lin.weight.dtype == mx.float32


def test_consolidate_reaches_every_target_in_one_solve(tiny):
    """Batch MEMIT from the stored targets: after it, each memory's layer-L output at its
    anchor is nearer its target z than after the sequential writes, and the weights are
    exactly W₀ + Σ of the new factors (so a revert is still exact)."""
    model, tok = tiny
    ed = make_editor(model, tok, lam=1.0)
    layers = ed.hp.layers
    w0 = weights(model, layers)
    facts = {"a": Fact("user", "name", "Rex", "dog"), "b": Fact("Aria", "lives_in", "Ghent"),
             "c": Fact("user", "favorite", "teal", "color")}
    for i, f in facts.items():
        ed.write(f, i)

    def miss():
        out = {}
        for i, f in facts.items():
            prompts, anchors = render(f, tok, ed.prefixes)
            _, h = memit.read(model, prompts, len(anchors), resid_layer=layers[-1])
            out[i] = np.linalg.norm(h - ed.edits[i].z) / np.linalg.norm(ed.edits[i].z)
        return out

    before = miss()
    old_factors = {i: ed.edits[i].factors for i in facts}
    assert ed.consolidate() == list(facts)
    after = miss()
    assert sum(after.values()) < sum(before.values()), (before, after)
    assert all(ed.edits[i].factors is not old_factors[i] for i in facts)
    for i in facts:
        ed.revert(i)
    for l in layers:
        np.testing.assert_allclose(weights(model, layers)[l], w0[l], atol=1e-6)


def test_consolidate_leaves_an_edit_with_other_anchors_in_place(tiny):
    """A memory learned when its family had other anchors (its z has another number of rows)
    is not re-solved: its wake factors stay, the others are consolidated."""
    model, tok = tiny
    ed = make_editor(model, tok, lam=1.0)
    ed.write(Fact("user", "name", "Rex", "dog"), "a")
    ed.write(Fact("user", "favorite", "teal", "color"), "b")
    ed.edits["a"].z = np.concatenate([ed.edits["a"].z, ed.edits["a"].z])   # two rows, one anchor
    kept = ed.edits["a"].factors
    assert ed.consolidate() == ["b"]
    assert ed.edits["a"].factors is kept


def test_forward_matches_the_full_model(tiny):
    model, tok = tiny
    ids = mx.array([tok.encode("My dog's name is Rex")])
    with memit.taps(model, resid_layer=2) as t:
        model.model(ids)
        full = np.array(t["resid"].seen)
    h, saved = memit.forward(model, ids, 0, 2, save={1})
    np.testing.assert_allclose(np.array(h), full, atol=1e-5)
    h2, _ = memit.forward(model, saved[1], 1, 2)
    np.testing.assert_allclose(np.array(h2), full, atol=1e-5)



def test_read_with_a_shared_prefix_equals_each_prompt_alone(tiny, monkeypatch):
    """read() runs a group's common beginning (a chat template's system turn) once and the
    rest from its keys and values: each anchor's mean key and h_L equal those of every prompt
    run alone through the model."""
    model, tok = tiny
    fact = Fact("user", "name", "Biscuit", "dog")
    prompts, anchors = render(fact, tok, ["The weather was calm."], "You are a helpful bot.")
    prompts += render(Fact("user", "lives_in", "Tromsø"), tok, ["The weather was calm."],
                      "You are a helpful bot.")[0]
    shared = [p for p in prompts if p.ids[:8] == prompts[-1].ids[:8]]
    assert len(shared) >= 3                                  # the chat questions share it
    prompts = [memit.Prompt(p.ids, p.target_start, [(i, t) for _, t in p.keys])
               for i, p in enumerate(prompts)]
    made, shared_prefix = [], memit._shared_prefix
    monkeypatch.setattr(memit, "_shared_prefix", lambda m, ids, *a: made.append(len(ids))
                        or shared_prefix(m, ids, *a))
    keys, h = memit.read(model, prompts, len(prompts), key_layers=[1, 2], resid_layer=2,
                         batch_size=4)
    assert made and min(made) >= 8
    for i, p in enumerate(prompts):
        with memit.taps(model, key_layers=[1, 2], resid_layer=2) as t:
            model.model(mx.array([p.ids]))
            ts = [k for _, k in p.keys]
            for l in (1, 2):
                want = np.array(t["keys"][l].seen[0].astype(mx.float32))[ts].mean(0)
                np.testing.assert_allclose(keys[l][i], want, rtol=1e-4, atol=1e-5)
            want = np.array(t["resid"].seen[0].astype(mx.float32))[ts].mean(0)
            np.testing.assert_allclose(h[i], want, rtol=1e-4, atol=1e-5)


def test_batches_by_prefix_keep_chat_questions_apart_from_bare_cues():
    """Every pass over prompts batches them with memit.by_prefix: each index once, no batch
    over its size, and a chat question (system turn first) never batched with a bare cue."""
    system = list(range(100, 124))
    chats = [system + [200 + i, 7, 8] for i in range(11)]
    cues = [[5, 6 + i, 9] for i in range(5)] + [[5, 6, 9, 10, 11, 12, 13, 14, 15, 16]]
    seqs = [s for pair in zip(chats, cues) for s in pair] + chats[len(cues):]
    batches = list(memit.by_prefix(seqs, 4))
    assert sorted(i for b in batches for i in b) == list(range(len(seqs)))
    assert all(0 < len(b) <= 4 for b in batches)
    for b in batches:
        kinds = {seqs[i][:24] == system for i in b}
        assert len(kinds) == 1
        if kinds == {True}:
            assert memit.shared(seqs[i] for i in b) >= memit.SHARED_MIN
    assert memit.shared([[1, 2, 3], [1, 2, 4], [1]]) == 1


def full_model_nll(model, prompts, layer, delta=None, weights=None):
    """The δ search's loss computed the plain way: each whole prompt through the full model,
    weights[i]·δ added at prompt i's key positions of `layer`, the NLL of the target tokens
    from the first key on, averaged per prompt and then over prompts."""
    import mlx.nn as nn

    out = []
    for i, p in enumerate(prompts):
        w = 1.0 if weights is None else weights[i]
        with memit.taps(model, delta_layer=layer) as t:
            if delta is not None:
                share = dict(zip([k for _, k in p.keys], p.shares or [w] * len(p.keys)))
                t["delta"].delta = mx.array(delta.astype(np.float32))
                t["delta"].mask = mx.array([[share.get(j, 0.0) for j in range(len(p.ids))]])
            lp = nn.log_softmax(model(mx.array([p.ids]))[0].astype(mx.float32), -1)
        first = min(t for _, t in p.keys)
        ts = [t for t in range(p.target_start, len(p.ids)) if t - 1 >= first]
        out.append(-np.mean([lp[t - 1, p.ids[t]].item() for t in ts]))
    return float(np.mean(out))


def test_packed_delta_search_equals_the_full_model(tiny):
    """The δ search runs the prompts' tails packed several to a row, with the tokens before
    each tail as a fixed KV prefix. Its NLL must equal the full model's on each whole prompt
    (target tokens from the first key on), at δ = 0 and at δ ≠ 0, including a prompt whose key
    sits in its answer."""
    model, tok = tiny
    ed = make_editor(model, tok, v_steps=1)
    prompts, _ = render(Fact("user", "lives_in", "Tromsø"), tok, ed.prefixes)
    # the same chat prompts keyed only in their answer ("You live in" → Tromsø)
    prompts += [memit.Prompt(p.ids, p.target_start, [k for k in p.keys if k[1] >= p.target_start])
                for p in prompts if any(t >= p.target_start for _, t in p.keys)]
    assert any(min(t for _, t in p.keys) >= p.target_start for p in prompts)
    got = []
    memit.compute_delta(model, prompts, [], ed.hp, log=lambda s, l, n: got.append(n))
    assert got[0] == pytest.approx(full_model_nll(model, prompts, ed.hp.layers[-1]), rel=1e-4)

    # and at δ ≠ 0 (after one Adam step), δ added at each prompt's key positions in the full
    # model: the packed rows put δ, and read the loss, at the same tokens
    delta1, _ = memit.compute_delta(model, prompts, [], ed.hp)
    ed.hp.v_steps, ed.hp.v_loss_stop, got = 2, 0.0, []
    memit.compute_delta(model, prompts, [], ed.hp, log=lambda s, l, n: got.append(n))
    want = full_model_nll(model, prompts, ed.hp.layers[-1], delta1)
    assert got[1] == pytest.approx(want, rel=1e-4)
    assert got[1] != pytest.approx(got[0], rel=1e-3)


def test_a_weighted_prompt_is_trained_with_its_share_of_delta(tiny):
    """weights[i] = w: the search adds w·δ at prompt i's anchors; its NLL equals the full
    model's with w·δ added there (the bare cue, trained with raw_share of δ)."""
    model, tok = tiny
    ed = make_editor(model, tok, v_steps=1)
    prompts, _ = render(Fact("user", "name", "Biscuit", "dog"), tok, ed.prefixes)
    w = [0.3] + [1.0] * (len(prompts) - 1)
    delta1, _ = memit.compute_delta(model, prompts, [], ed.hp, weights=w)   # one Adam step
    ed.hp.v_steps, ed.hp.v_loss_stop = 2, 0.0
    got = {}
    for name, ws in (("weighted", w), ("plain", None)):
        got[name] = []
        memit.compute_delta(model, prompts, [], ed.hp, weights=ws,
                            log=lambda s, l, n, g=got[name]: g.append(n))
    want = full_model_nll(model, prompts, ed.hp.layers[-1], delta1, w)
    assert got["weighted"][1] == pytest.approx(want, rel=1e-4)
    assert got["weighted"][1] != pytest.approx(got["plain"][1], rel=1e-4)


def test_only_a_bare_cue_about_the_user_is_trained_with_raw_share(tiny):
    """The bare statement cue of a fact about the user (keyed at a common word) is trained with
    `raw_share` of δ, its own and each companion's; a named person's (keyed at the name) and
    every other prompt with all of it."""
    model, tok = tiny
    ed = make_editor(model, tok, raw_share=0.7)
    for fact, companion in ((Fact("user", "name", "Biscuit", "dog"),
                             Fact("user", "name", "Rex", "dog")),
                            (Fact("Aria", "lives_in", "Ghent"),
                             Fact("Aria", "works_as", "glassblower"))):
        own = render(fact, tok, ed.prefixes, None, ed.hp.questions)[0]
        other = render(companion, tok, ed.prefixes[:1], None, min(2, ed.hp.questions))[0]
        train, w = training_set(fact, own, [companion], tok, ed.prefixes, None, ed.hp)
        assert [p.ids for p in train] == [p.ids for p in own + other]
        share = 0.7 if fact.is_self else 1.0
        assert w == [share] + [1.0] * (len(own) - 1) + [share] + [1.0] * (len(other) - 1)


def test_protect_objects_keeps_a_later_edit_off_an_objects_tokens(tiny_model_dir):
    """With `protect_objects`, the keys at a fact's object tokens join K_p, and a later edit
    moves the outputs there less (it would otherwise misspell the object): same two facts
    written into two copies of one model, with and without."""
    from mlx_lm import load

    a = Fact("user", "name", "Biscuit", "dog")
    b = Fact("user", "name", "Marmalade", "cat")
    moved, obj = {}, None
    for on in (True, False):
        model, tok = load(str(tiny_model_dir))
        ed = make_editor(model, tok, protect_objects=on)
        ea = ed.write(a, "a")
        if on:
            obj = ea.object_keys
            assert set(obj) == set(ed.hp.layers)
            assert len(obj[1]) == len(tok._tokenizer(" Biscuit")["input_ids"]) - 1
        else:
            assert ea.object_keys == {}
        eb = ed.write(b, "b")
        moved[on] = sum(np.linalg.norm(
            (eb.factors[l][0].astype(np.float64) @ eb.factors[l][1].astype(np.float64).T)
            @ obj[l].astype(np.float64).T) for l in ed.hp.layers)
    assert moved[True] < 0.9 * moved[False]          # 0.23 vs 0.29 on this tiny model


def test_a_loaded_edits_object_keys_are_read_before_the_next_write(tiny):
    """Object keys are not stored: an edit added without them has them read from the
    weights before the next write; K_p holds every edit's keys and object keys, through a
    consolidation too, and reverting every edit empties it."""
    model, tok = tiny
    ed = make_editor(model, tok)

    def kpkp():
        return {l: U.T @ U for l, (U, _) in ed.protected().items()}

    ea = ed.write(Fact("user", "name", "Biscuit", "dog"), "a")
    with_obj = kpkp()
    assert set(with_obj) == set(ed.hp.layers)
    ed.revert("a")
    assert kpkp() == {}
    ea.object_keys = None                                   # as loaded from disk
    ed.add(ea)
    assert all(not np.allclose(kpkp()[l], with_obj[l]) for l in ed.hp.layers)
    ed.write(Fact("user", "name", "Marmalade", "cat"), "b")
    assert ea.object_keys and set(ea.object_keys) == set(ed.hp.layers)
    assert ed.consolidate() == ["a", "b"]             # the joint solve keeps the object keys
    want = {l: sum(e.keys[l].astype(np.float64).T @ e.keys[l].astype(np.float64)
                   + e.object_keys[l].astype(np.float64).T @ e.object_keys[l].astype(np.float64)
                   for e in ed.edits.values()) for l in ed.hp.layers}
    got = kpkp()
    assert all(np.allclose(got[l], want[l], atol=1e-9) for l in ed.hp.layers)
    for l, (U, W) in ed.protected().items():          # C⁻¹K_pᵀ kept in step with K_p
        np.testing.assert_allclose(W, ed.cinv[l] @ U.T, rtol=1e-9, atol=1e-12)
    ed.revert_all(["a", "b"])
    assert kpkp() == {}


def test_retune_changes_settings_and_the_principal_directions_follow(tiny):
    model, tok = tiny
    ed = make_editor(model, tok)
    assert ed.principal == {}                       # nullspace 0: nothing held
    ed.retune(nullspace=0.5, lam="20")
    assert ed.hp.lam == 20.0 and set(ed.principal) == set(ed.hp.layers)
    with pytest.raises(ValueError, match="unknown editor setting"):
        ed.retune(no_such=1)


def test_pack_places_every_tail_without_overlap_in_fewer_slots():
    for lengths in ([7, 7, 7, 19, 17, 3], [5], [4, 4, 4, 4], [30, 1, 1, 29, 2, 12, 18]):
        S, place, R = memit._pack(lengths)
        assert max(lengths) <= S <= 2 * max(lengths)
        used = [set() for _ in range(R)]
        for n, (r, col) in zip(lengths, place):
            cols = set(range(col, col + n))
            assert cols <= set(range(S)) and not cols & used[r]
            used[r] |= cols
        assert R * S <= len(lengths) * max(lengths)      # never worse than one row each
    S, _, R = memit._pack([7, 7, 7, 19, 17, 3])
    assert R * S <= 63                                   # vs 6 × 19 = 114 left-padded


def test_the_inverse_statistics_are_cached_bit_for_bit(tiny, tmp_path):
    """C and C⁻¹ are computed once per model and layer; C⁻¹ is read back exactly (float64
    bytes), and once it is cached C is not read unless asked for. A damaged cache file is
    said, removed and made again — never used, never a crash."""
    from io import StringIO

    from rich.console import Console

    from sleepllm import stats
    from sleepllm.model import fingerprint
    from sleepllm.store import load_arrays

    model, tok = tiny
    root = tmp_path / "cache"                  # not the session's cache: it is damaged below
    folder = root / fingerprint(model)
    load = lambda **kw: stats.load(model, tok, [1, 2], root, fingerprint(model), 4, **kw)
    first = load()
    n = 4 * first["cinv"][1].shape[0]
    assert sorted(p.name for p in folder.glob("c*")) == \
        [f"{w}_l{l}_n{n}.safetensors" for w in ("cinv", "cov") for l in (1, 2)]
    cov = {l: load_arrays(folder / f"cov_l{l}_n{n}.safetensors")["C"] for l in (1, 2)}
    for l in (1, 2):   # C is float32 on disk; C⁻¹ is made from what is read back
        assert cov[l].dtype == np.float32 and first["cinv"][l].dtype == np.float64
        assert np.array_equal(first["cinv"][l], memit.inverse(cov[l].astype(np.float64)))
        (folder / f"cov_l{l}_n{n}.safetensors").write_bytes(b"damaged")
    again = load()
    assert again["prefixes"] == first["prefixes"] and set(again) == {"prefixes", "cinv"}
    for l in (1, 2):
        assert np.array_equal(again["cinv"][l], first["cinv"][l])
        assert (folder / f"cov_l{l}_n{n}.safetensors").read_bytes() == b"damaged"   # not read
    # damaged files: C asked for, a C⁻¹, the prefixes
    out = StringIO()
    (folder / f"cinv_l2_n{n}.safetensors").write_bytes(b"\x00" * 64)
    (folder / "prefixes.json").write_text('{"not": "a list"')
    mended = load(console=Console(file=out, width=200), parts=("prefixes", "cinv", "cov"))
    said = out.getvalue()
    assert said.count("was damaged") == 4 and "making it again" in said, said
    assert mended["prefixes"] == first["prefixes"]
    for l in (1, 2):
        np.testing.assert_allclose(mended["cov"][l], cov[l], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mended["cinv"][l], first["cinv"][l], rtol=1e-4, atol=1e-6)
    assert stats.load(model, tok, [1, 2], root, fingerprint(model), 4)["prefixes"] == \
        first["prefixes"]


# ------------------------------------------------------------------ memory neurons

def _gate_inputs(rng, d=32):
    """(ordinary, anchor, pos): 4000 ordinary inputs, an anchor and 6 positives near it, all
    sharing a large common direction (the MLP has no bias to take it away)."""
    common = rng.standard_normal(d) * 3
    ordinary = common + rng.standard_normal((4000, d))
    anchor = common + 2.0 * rng.standard_normal(d)
    return ordinary, anchor, anchor + 0.3 * rng.standard_normal((6, d))


def test_a_neuron_gate_opens_on_its_anchors_and_stays_closed_elsewhere():
    """neurons.fit: the unit gives 1 at every positive (levelled), ~0 on held-out ordinary
    inputs and on the contrast rows, though all share a large common direction (no bias)."""
    from sleepllm import neurons

    rng = np.random.default_rng(0)
    ordinary, anchor, pos = _gate_inputs(rng)
    d = pos.shape[1]
    hard = anchor + 0.3 * rng.standard_normal((4, d)) + 1.5 * rng.standard_normal(d)
    g, u, level = neurons.fit(pos, ordinary[:2000], hard[:2])
    out = neurons.output(pos, g, u) / level
    np.testing.assert_allclose(out, 1.0, atol=0.05)
    assert np.abs(neurons.output(ordinary[2000:], g, u) / level).max() < 0.05
    assert np.abs(neurons.output(hard, g, u) / level).max() < 0.2
    with pytest.raises(ValueError):
        neurons.fit(np.zeros((0, d)), ordinary)


def test_a_gate_fit_with_others_facts_stays_shut_on_their_kind_of_text():
    """neurons.fit's strangers (others' facts and the model's continuations of them): text that
    shares part of the anchors' direction — not the part that names the memory — opens a gate
    fit without them, and stays shut under one fit with some of them, held-out ones too."""
    from sleepllm import neurons

    rng = np.random.default_rng(1)
    ordinary, anchor, pos = _gate_inputs(rng)
    d = pos.shape[1]
    kind, own = rng.standard_normal(d) * 2.0, rng.standard_normal(d) * 2.0
    pos = pos + kind + own                      # the memory: its kind of fact and its subject
    others = anchor + kind + 0.5 * rng.standard_normal((400, d))   # the kind, someone else
    opening = lambda g, u, lev: np.abs(neurons.output(others[200:], g, u) / lev)
    without = opening(*neurons.fit(pos, ordinary))
    g, u, level = neurons.fit(pos, ordinary, strangers=others[:200])
    np.testing.assert_allclose(neurons.output(pos, g, u) / level, 1.0, atol=0.05)
    assert np.quantile(without, 0.9) > 0.2 and opening(g, u, level).max() < 0.05


def test_others_facts_are_made_once_per_model_and_never_about_the_facts_subject(tiny, tmp_path):
    """stats "strangers": the neuron layer's inputs at every token of each of
    relations.strangers_cues and of the model's greedy continuation of it, cached (read back
    the same; a damaged file made again); Editor.strangers leaves out the rows about the
    fact's own subject (a friend called as one of relations.STRANGERS), and only those."""
    from sleepllm import probes, stats
    from sleepllm.model import fingerprint

    model, tok = tiny
    root = tmp_path / "cache"
    load = lambda: stats.load(model, tok, [1, 2], root, fingerprint(model), 4,
                              parts=("strangers",))["strangers"][2]
    X, who = load()
    said = relations.strangers_cues()
    ids = [probes.raw_ids(tok, c) for _, c in said]
    texts = probes.generate(model, tok, ids, max_tokens=stats.STRANGER_TOKENS)
    lengths = [len(i) + len(tok.encode(t, add_special_tokens=False)) for i, t in zip(ids, texts)]
    assert X.shape == (sum(lengths), memit.mlp_width(model, 2)) and X.dtype == np.float32
    assert np.array_equal(who, np.repeat([relations.STRANGERS.index(p) for p, _ in said], lengths))
    again = load()
    assert np.array_equal(again[0], X) and np.array_equal(again[1], who)
    (path,) = (root / fingerprint(model)).glob("strangers_*")
    path.write_bytes(b"damaged")
    np.testing.assert_array_equal(load()[0], X)
    ed = Editor(model, tok, memit.Hparams.from_config(tiny_cfg(method="neurons")["editor"]),
                {"prefixes": [], "strangers": {2: (X, who)}})
    beatrix = ed.strangers(Fact("Beatrix", "lives_in", "Ghent"))
    assert len(beatrix) == (who != 0).sum() and len(ed.strangers(Fact("Aria", "age", "9"))) == len(X)


def test_shut_keeps_the_gate_at_its_anchors_and_shuts_it_on_a_leak_at_least_cost():
    """neurons.shut: gᵀp unchanged at every positive, gᵀc = −T/4 at the closed rows, and the
    change is the least in the metric M (KKT: MΔ lies in the rows' span)."""
    from sleepllm import neurons

    ordinary, anchor, pos = _gate_inputs(np.random.default_rng(1))
    g, u, level = neurons.fit(pos, ordinary)
    leak = 0.6 * anchor + 0.4 * ordinary[:3]         # another memory's anchors, half like ours
    assert (neurons.output(leak, g, u) / level).max() > 0.1
    M = ordinary.T @ ordinary / len(ordinary)
    g2 = neurons.shut(g, pos, leak, M)
    np.testing.assert_allclose(pos @ g2, pos @ g, rtol=1e-4)     # (the ridge: 1e-6 of the
    np.testing.assert_allclose(leak @ g2, -neurons.T / 4, rtol=1e-4)   # rows' scale)
    A = np.concatenate([pos, leak])
    lam = np.linalg.lstsq(A.T, M @ (g2 - g), rcond=None)[0]
    np.testing.assert_allclose(A.T @ lam, M @ (g2 - g), atol=1e-8 * np.abs(M @ (g2 - g)).max())
    assert np.abs(neurons.output(leak, g2, u) / level).max() < 1e-3
    assert np.quantile(np.abs(neurons.output(ordinary, g2, u) / level), 0.99) < 0.05


def test_settle_shuts_a_gate_on_a_later_memorys_anchors_and_keeps_the_old_edit(tmp_path):
    """Editor.settle: a unit open (above LEAK, below SHARED_OPEN) on another memory's anchors
    is shut there; its gate at its own anchors, its u and value column stay; the Edit replaced
    is left as it was (sleep's rollback puts it back) and the weights carry the new gate. (The
    tiny model is 256 wide and the unit fitted on 4 of a write's anchor inputs, so that
    holding them leaves the gate room to move.)"""
    import dataclasses

    from conftest import make_tiny_model_dir
    from mlx_lm import load

    from sleepllm import editor as editor_mod, neurons

    model, tok = load(str(make_tiny_model_dir(tmp_path / "wide", hidden=256, intermediate=512)))
    ed = make_editor(model, tok, method="neurons", v_steps=4)
    L = ed.neuron_layer
    real = ed.revert(ed.write(Fact("user", "name", "Rex", "dog"), "a").id)
    X = real.keys[L][:4].astype(np.float64)
    g, u, level = neurons.fit(X, ed.negatives)
    a = dataclasses.replace(real, keys={L: X.astype(np.float16)},
                            factors={L: (g.astype(np.float16), u.astype(np.float16),
                                         real.factors[L][2])})
    g, u = (v.astype(np.float64) for v in a.factors[L][:2])
    ed.add(a)
    # a later memory whose anchors lie between a's and another fact's, where a half opens
    c = ed.revert(ed.write(Fact("Aria", "lives_in", "Ghent"), "c").id)
    other = c.keys[L][:4].astype(np.float64)
    for t in np.linspace(0, 1, 41):
        K = t * X + (1 - t) * other
        if 0.15 < (neurons.output(K, g, u) / level).max() < 0.45:
            break
    else:
        pytest.skip("no blend half opens the tiny model's unit")
    b = dataclasses.replace(a, id="b", keys={L: K.astype(np.float16)},
                            factors={L: (-a.factors[L][0], *a.factors[L][1:])})
    ed.add(b)
    assert ed.settle() == ["a"]
    new = ed.edits["a"]
    assert new is not a and a.factors[L][0] is not new.factors[L][0]
    g2 = new.factors[L][0].astype(np.float64)
    np.testing.assert_allclose(X @ g2, X @ g, rtol=2e-3, atol=0.05)
    assert (neurons.output(K.astype(np.float16).astype(np.float64), g2, u) / level).max() \
        < editor_mod.LEAK
    np.testing.assert_array_equal(new.factors[L][1], a.factors[L][1])
    gate = np.array(memit._layers(model)[L].mlp.gate_proj.weight)
    np.testing.assert_array_equal(gate[-2], new.factors[L][0].astype(np.float32))
    assert ed.settle() == []            # nothing left to shut


def _mlp_weights(model, l):
    mlp = memit._layers(model)[l].mlp
    return [np.array(mlp[n].weight) for n in ("gate_proj", "up_proj", "down_proj")]


def test_a_memory_neuron_adds_delta_at_its_anchors_and_its_revert_is_exact(tiny):
    """A fact written as a memory neuron: the layer's MLP gains exactly one unit per memory
    (float16 vectors, applied as stored); at the fact's anchors the gate opens on, the layer's
    output moves by the v* search's δ, on most ordinary text the unit is silent; removing a unit
    restores the weights bit for bit."""
    from sleepllm import neurons

    model, tok = tiny
    ed = make_editor(model, tok, method="neurons", v_steps=10)
    L = ed.neuron_layer
    fact = Fact("user", "name", "Rex", "dog")
    prompts, anchors = render(fact, tok, ed.prefixes)
    w0 = _mlp_weights(model, L)
    _, h0 = memit.read(model, prompts, len(anchors), resid_layer=L)
    a = ed.write(fact, "a")
    assert a.kind == "neuron" and set(a.factors) == {L}
    assert all(v.dtype == np.float16 for v in a.factors[L])
    w1 = _mlp_weights(model, L)
    assert w1[0].shape[0] == w0[0].shape[0] + 1 and w1[2].shape[1] == w0[2].shape[1] + 1
    np.testing.assert_array_equal(w1[0][-1], a.factors[L][0].astype(np.float32))
    _, h1 = memit.read(model, prompts, len(anchors), resid_layer=L)
    g, u, d = (v.astype(np.float64) for v in a.factors[L])
    shift = (h1 - h0)[0]
    assert shift @ d / np.linalg.norm(shift) / np.linalg.norm(d) > 0.999
    # the shift at an anchor is d times the unit's output there (h: the anchor's mean over
    # the prompts); the positives the gate opens are levelled to 1, and it opens most
    X = memit.mlp_inputs(model, [prompts], L).astype(np.float64)
    assert abs(np.linalg.norm(shift) / np.linalg.norm(d) - neurons.output(X, g, u).mean()) < 0.01
    X = a.keys[L].astype(np.float64)     # every positive of the write
    out, opened = neurons.output(X, g, u), X @ g > neurons.T / 4
    assert opened.mean() >= 0.75 and abs(out[opened].mean() - 1) < 0.05
    # the ridge: levelled, not exactly (≤ 0.15 before the gates were closed on others' facts
    # too: this random model's anchors lie among them, its gate values at the positives vary
    # more; the second v* search trains with the openings as they are, as_deployed)
    assert np.abs(out[opened] - 1).max() < 0.25
    silent = np.abs(neurons.output(ed.negatives, g, u))
    assert np.median(silent) < 1e-3 and np.quantile(silent, 0.9) < 0.05
    ed.write(Fact("Aria", "lives_in", "Ghent"), "b")
    assert _mlp_weights(model, L)[0].shape[0] == w0[0].shape[0] + 2
    ed.revert("b")
    for x, y in zip(_mlp_weights(model, L), w1):
        np.testing.assert_array_equal(x, y)
    ed.revert("a")
    for x, y in zip(_mlp_weights(model, L), w0):
        np.testing.assert_array_equal(x, y)


def test_the_second_delta_search_sees_the_unit_as_the_model_runs_it(tiny, monkeypatch):
    """editor.as_deployed: δ at every token the unit opens on, each with its opening as the
    share. The search's NLL (without the unit, at δ = its stored value column) must equal the
    full model's with the unit installed and no δ added by hand, on the same prompts."""
    from sleepllm import editor as editor_mod

    monkeypatch.setattr(editor_mod, "OPEN_MIN", 0.0)    # every token, however little it opens
    model, tok = tiny
    ed = make_editor(model, tok, method="neurons", v_steps=10)
    L = ed.neuron_layer
    fact = Fact("user", "allergic_to", "sesame")
    a = ed.write(fact, "a")
    g, u, d = (v.astype(np.float64) for v in a.factors[L])
    prompts, _ = render(fact, tok, ed.prefixes)
    deployed = editor_mod.as_deployed(model, prompts, L, g, u, 1.0)
    assert len(deployed) == len(prompts)
    assert all(len(p.keys) == len(p.ids) and len(p.shares) == len(p.ids) for p in deployed)
    want = full_model_nll(model, deployed, L)      # the unit itself adds d · its output
    ed.revert("a")
    got = []
    ed.hp.v_steps, ed.hp.v_loss_stop = 1, 0.0
    memit.compute_delta(model, deployed, [], ed.hp, init=d, log=lambda s, l, n: got.append(n))
    assert got[0] == pytest.approx(want, rel=1e-4)
    assert full_model_nll(model, deployed, L) != pytest.approx(want, rel=1e-3)   # no unit


def test_a_memory_neuron_of_the_wrong_shape_is_an_error(tiny):
    model, tok = tiny
    ed = make_editor(model, tok, method="neurons", v_steps=4)
    e = ed.revert(ed.write(Fact("user", "name", "Rex", "dog"), "a").id)
    L = ed.neuron_layer
    g, u, d = e.factors[L]
    e.factors[L] = (g[:-1], u, d)
    with pytest.raises(ValueError, match="do not fit"):
        ed.add(e)
    e.factors[L] = (g, u, d)
    memit_ed = make_editor(model, tok, method="memit")
    with pytest.raises(ValueError, match="method: neurons"):
        memit_ed.add(e)


def test_a_unit_open_on_a_new_facts_anchors_is_its_companion(tiny, monkeypatch):
    """"My dog's name is Rex" and "My dog is a beagle" read the same inputs at "dog": the
    second unit is trained with the first fact's prompts (it adds what is still missing) and
    not against the first unit's anchors, which it could not be told from."""
    from sleepllm import editor as editor_mod

    model, tok = tiny
    ed = make_editor(model, tok, method="neurons", v_steps=4)
    name = Fact("user", "name", "Rex", "dog")
    ed.write(name, "a")
    seen = {}
    real = editor_mod.training_set

    def spy(fact, prompts, companions, *a, **k):
        seen["companions"] = list(companions)
        return real(fact, prompts, companions, *a, **k)

    monkeypatch.setattr(editor_mod, "training_set", spy)
    ed.write(Fact("user", "attribute", "Beagle", "dog"), "b")
    assert seen["companions"] == [name]
    ed.write(Fact("Aria", "lives_in", "Ghent"), "c")
    assert seen["companions"] == []


@pytest.mark.parametrize("method", ["memit", "neurons"])
def test_unedited_gives_the_base_model_and_puts_the_edits_back(tiny, method):
    """Sleep's general-answer baseline runs the unedited model: inside `unedited()` the logits
    are the base model's (memory neurons' units gone, MEMIT factors off), after it the edited
    weights are back bit for bit."""
    model, tok = tiny
    ids = mx.array([tok.encode("My dog's name is")])
    base = np.array(model(ids))
    ed = make_editor(model, tok, method=method, v_steps=4)
    ed.write(Fact("user", "name", "Rex", "dog"), "a")
    edited = np.array(model(ids))
    w = _mlp_weights(model, ed.hp.layers[-1])
    with ed.unedited():
        np.testing.assert_allclose(np.array(model(ids)), base, atol=1e-5)
    np.testing.assert_array_equal(np.array(model(ids)), edited)
    for x, y in zip(_mlp_weights(model, ed.hp.layers[-1]), w):
        np.testing.assert_array_equal(x, y)


def test_mlp_inputs_of_prompts_sharing_a_beginning_equal_each_prompt_run_alone(tiny):
    """mlp_inputs runs the chat template's shared beginning once for a group of prompts; the
    rows it returns, in the prompts' order, are those of each prompt run by itself."""
    from sleepllm.editor import others_prompts, variant_prompts

    model, tok = tiny
    fact = Fact("user", "attribute", "Nokia", "phone")
    prompts = variant_prompts(fact, tok) + others_prompts(fact, tok)
    assert len(prompts) > 10 and len({p.ids[0] for p in prompts}) > 1
    got = memit.mlp_inputs(model, [prompts], 1)
    alone = np.concatenate([memit.mlp_inputs(model, [np.array([p.ids])], 1)[[t for _, t in p.keys]]
                            for p in prompts])
    assert got.shape == alone.shape
    np.testing.assert_allclose(got, alone, atol=1e-5)


def test_the_gates_ordinary_text_is_about_every_topic(tiny):
    """stats.topic_batches: a paragraph and a chat answer per topic, each row TEXT_LEN tokens
    beginning with its own prompt, in batches of at most 16 rows."""
    from sleepllm import stats

    model, tok = tiny
    batches = stats.topic_batches(model, tok)
    assert all(b.shape[0] <= 16 and b.shape[1] == stats.TEXT_LEN for b in batches)
    rows = [r.tolist() for b in batches for r in b]
    assert len(rows) == 2 * len(stats.TOPICS)
    for topic in stats.TOPICS:
        para = tok.encode(f"A short text about {topic}:\n\n")
        assert sum(r[:len(para)] == para for r in rows) == 1, topic
        assert sum(f"Tell me about {topic}." in tok.decode(r) for r in rows) >= 1, topic


def test_the_other_things_said_of_a_person_are_their_memories_about_cues():
    """relations.about: every other family's cue said of the fact's owner — a named person, or
    the relative of a "my neighbour's name is …" fact —, none of the fact's own nor of a
    family said with a verb of its own (a habit); the user's own facts (keyed at their
    relation's word) have none."""

    cues = relations.about(Fact("Aria", "lives_in", "Ghent"))
    assert "Aria works as a" in cues and "The car Aria drives is a" in cues
    assert not any("lives in" in c for c in cues)
    assert len(cues) == len(relations.FAMILIES) - 1 - len(relations.MANY) + sum(
        len(ns) - 1 for ns in relations.ABOUT_NOUNS.values())
    mine = relations.about(Fact("user", "name", "Gwen", "neighbor"))
    assert "My neighbor works as a" in mine and "My neighbor's dog is named" in mine
    assert relations.about(Fact("user", "lives_in", "Oslo")) == []


def test_the_search_keeps_what_follows_the_owners_other_cues(tiny):
    """kl_about: the v* search holds the next token of the other things said of the fact's
    owner (editor.about_prompts, keyed at the name: MEMIT's key for a person). A δ searched
    with the term moves those predictions less than one searched without it. A memory neuron
    is keyed after the name, where those cues do not reach: it has none."""
    from sleepllm import editor as editor_mod

    model, tok = tiny
    fact = Fact("Aria", "lives_in", "Ghent")
    ed = make_editor(model, tok, method="memit", v_steps=12, v_loss_stop=0.0, weight_decay=0.0)
    prompts, anchors = render(fact, tok, ed.prefixes)
    about = editor_mod.about_prompts(fact, tok, anchors)
    assert about and all(tok.decode(p.ids[: p.keys[-1][1] + 1]).endswith("Aria") for p in about)
    kl = {}
    for w in (0.0, 10.0):
        ed.retune(v_loss_stop=0.0)
        delta, _ = memit.compute_delta(model, prompts, about, ed.hp, kl_weights=[w] * len(about))
        ed.retune(v_loss_stop=100.0)               # one evaluation: the KL term at δ
        log = []
        memit.compute_delta(model, prompts, about, ed.hp, init=delta,
                            kl_weights=[1.0] * len(about),
                            log=lambda s, loss, nll: log.append(loss - nll))
        kl[w] = log[0]
    assert kl[10.0] < 0.5 * kl[0.0], kl
    _, unit_anchors = render(fact, tok, ed.prefixes, unit=True)
    assert editor_mod.about_prompts(fact, tok, unit_anchors) == []


def test_kl_stop_keeps_the_search_going_until_every_kl_prompt_is_held(tiny):
    """kl_stop > 0: the δ search stops only once every held KL prompt's KL (the editor holds
    the about cues) is below it as well as every NLL below v_loss_stop. From a δ found with
    no KL term (which moves the owner's other cues), with the NLL condition already met:
    kl_stop 0 stops at once, kl_stop > 0 runs on and lowers the KL term."""
    from sleepllm import editor as editor_mod

    model, tok = tiny
    fact = Fact("Aria", "lives_in", "Ghent")
    ed = make_editor(model, tok, method="neurons", v_steps=12, kl_about=0.0, v_loss_stop=0.0,
                     weight_decay=0.0)
    prompts, anchors = render(fact, tok, ed.prefixes)
    about = editor_mod.about_prompts(fact, tok, anchors)
    found, _ = memit.compute_delta(model, prompts, [], ed.hp)
    ed.retune(kl_about=1.0, v_loss_stop=100.0)
    runs = {}
    for kl_stop in (0.0, 1e-4):
        ed.retune(kl_stop=kl_stop)
        log = []
        memit.compute_delta(model, prompts, about, ed.hp, init=found,
                            kl_weights=[1.0] * len(about),
                            log=lambda s, loss, nll: log.append(loss - nll))   # the KL term
        runs[kl_stop] = log
    assert len(runs[0.0]) == 1
    assert runs[0.0][0] > 1e-4 and len(runs[1e-4]) > 1
    assert runs[1e-4][-1] < runs[1e-4][0], runs[1e-4]
    # KL prompts not held (the editor's '<anchor> is a') do not keep it going
    log = []
    memit.compute_delta(model, prompts, about, ed.hp, init=found, kl_weights=[1.0] * len(about),
                        kl_held=[False] * len(about), log=lambda *a: log.append(a))
    assert len(log) == 1
    with pytest.raises(ValueError):
        memit.compute_delta(model, prompts, about, ed.hp, init=found, kl_held=[True])


def test_a_search_from_a_found_delta_stays_near_it(default_model):
    """compute_delta(init=δ) runs Adam at v_lr_warm: started from the δ a search found, its
    next steps keep the NLL near where it was; at v_lr, Adam's first step (about the rate on
    every coordinate) throws it off (the default model: a tiny random one fits nothing)."""
    model, tok = default_model
    hp = memit.Hparams.from_config(load_config(None, {})["editor"])
    hp.v_loss_stop = 0.05
    prompts, _ = render(Fact("user", "name", "Waffles", "dog"), tok, [""])
    d, _ = memit.compute_delta(model, prompts, [], hp)
    hp.v_steps, hp.v_loss_stop = 3, 0.0

    def nlls(rate):
        hp.v_lr_warm, got = rate, []
        memit.compute_delta(model, prompts, [], hp, init=d, log=lambda s, l, n: got.append(n))
        return got

    warm, cold = nlls(0.1), nlls(hp.v_lr)
    assert warm[0] == pytest.approx(cold[0]) and warm[0] < 0.1
    assert max(cold[1:]) > 3 * cold[0]
    assert max(warm[1:]) < 2 * warm[0]


def test_a_unit_about_someone_else_is_keyed_after_their_name_at_the_relation(tiny):
    """A memory neuron about Greta opens where the text says which of Greta's things is
    meant ("Greta's dog", "Greta lives"), not at "Greta", which every fact about her shares;
    MEMIT keeps her facts at her name (their shared key). Its gate is trained shut on the same
    wordings said of many other names (relations.OTHER_NAMES)."""
    _, tok = tiny
    facts = [Fact("Greta", "name", "Rex", "dog"), Fact("Greta", "lives_in", "Oslo"),
             Fact("Greta", "works_as", "farrier"), Fact("my sister", "drives", "Saab")]
    for fact in facts:
        name = fact.subject.split()[-1]
        for unit in (False, True):
            prompts, _ = render(fact, tok, ["It rained"], None, 3, unit=unit)
            ends = {tok.decode(p.ids[: t + 1]).rstrip().endswith(name)
                    for p in prompts for _, t in p.keys}
            assert ends == {not unit}, (fact, unit)
    cues, questions = relations.others_wordings(facts[0])
    said = {n for n in relations.OTHER_NAMES if any(n in t for t in cues + questions)}
    assert len(said) >= 20 and "Greta" not in said


def test_a_later_unit_is_trained_closed_on_every_token_of_the_earlier_memories_prompts(
        tiny, monkeypatch):
    """"The gym I go to" keys a unit at "I": it must stay closed at the "I" of "The instrument
    I play is the", an earlier memory's cue that is not that memory's anchor. Every token of the
    other memories' own prompts (told_prompts), from where each differs from the new fact's,
    is among the new gate's negatives; a companion's are not (it shares the anchor)."""
    from sleepllm import editor as editor_mod
    from sleepllm import neurons

    model, tok = tiny
    ed = make_editor(model, tok, method="neurons", v_steps=4)
    L = ed.neuron_layer
    oboe = Fact("user", "plays", "oboe")
    ed.write(oboe, "a")
    ed.write(Fact("user", "name", "Rex", "dog"), "b")
    seen = {}
    real = neurons.fit

    def spy(pos, ordinary, hard=None, others=None, more=None, told=None, strangers=None):
        seen["told"] = told
        return real(pos, ordinary, hard, others, more, told, strangers)

    monkeypatch.setattr(neurons, "fit", spy)
    gym = Fact("user", "attribute", "Steelhaus", "gym")
    ed.write(gym, "c")
    own = render(gym, tok, ed.prefixes, None, ed.hp.questions, unit=True)[0]
    expect = []
    for f in (oboe, Fact("user", "name", "Rex", "dog")):
        for p in editor_mod.told_prompts(f, tok, ed.prefixes, None, ed.hp.questions):
            start = max(memit.shared([p.ids, o.ids]) for o in own)
            assert 0 < start < len(p.ids)          # the template's beginning is not a negative
            X = memit.mlp_inputs(model, [np.array([p.ids])], L)
            expect.append(X[start:])
    expect = np.concatenate(expect)
    assert seen["told"].shape == expect.shape
    np.testing.assert_allclose(seen["told"].astype(np.float32), expect, atol=2e-2, rtol=1e-2)
    # the bare cue's "I" of the earlier memory is one of them
    cue = "The instrument I play is the"
    ids = tok._tokenizer(cue, add_special_tokens=True)["input_ids"]
    i_at = tok._tokenizer(cue, add_special_tokens=True).char_to_token(cue.index(" I") + 1)
    x_i = memit.mlp_inputs(model, [np.array([ids])], L)[i_at]
    assert np.abs(seen["told"].astype(np.float32) - x_i).max(1).min() < 2e-2
    # a companion (same anchor: "my dog") brings none of its prompts
    seen.clear()
    ed.write(Fact("user", "attribute", "Beagle", "dog"), "d")
    n_other = sum(len(p.ids) - max(memit.shared([p.ids, o.ids]) for o in render(
        Fact("user", "attribute", "Beagle", "dog"), tok, ed.prefixes, None, ed.hp.questions,
        unit=True)[0]) for f in (oboe, gym)
        for p in editor_mod.told_prompts(f, tok, ed.prefixes, None, ed.hp.questions))
    assert len(seen["told"]) == n_other
    # a reverted memory's inputs are not kept
    assert oboe in ed._told
    ed.revert("a")
    ed.write(Fact("user", "lives_in", "Oslo"), "e")
    assert oboe not in ed._told and gym in ed._told


def test_rehearsal_searches_only_the_value_and_putting_the_old_edit_back_is_exact(tiny):
    """Editor.rehearse: the unit keeps its gate and up vectors, its value column is searched
    again on its prompts and the wordings given; every other unit is untouched, and the edit
    it returns, put back, restores the weights bit for bit."""
    model, tok = tiny
    ed = make_editor(model, tok, method="neurons", v_steps=10)
    L = ed.neuron_layer
    a = ed.write(Fact("user", "name", "Rex", "dog"), "a")
    b = ed.write(Fact("Aria", "lives_in", "Ghent"), "b")
    w1 = _mlp_weights(model, L)
    wordings = [(t, ans) for t, ans in relations.every_wording(a.fact)
                if t not in relations.cues(a.fact)[:1]]
    assert any(ans is None for _, ans in wordings) and any(ans for _, ans in wordings)
    old = ed.rehearse("a", wordings, steps=3)
    assert old is a and ed.edits["b"] is b
    new = ed.edits["a"]
    for i in (0, 1):
        np.testing.assert_array_equal(new.factors[L][i], a.factors[L][i])
    assert not np.array_equal(new.factors[L][2], a.factors[L][2])
    assert new.factors[L][2].dtype == np.float16 and np.isfinite(new.factors[L][2]).all()
    assert ed.swap(old) is new
    for x, y in zip(_mlp_weights(model, L), w1):
        np.testing.assert_array_equal(x, y)
    # wordings it answers already are searched on as the missed ones are (held to the
    # object); one it was written with is not searched on twice
    seen, compute = [], memit.compute_delta

    def capture(model, prompts, *args, **kw):
        seen.append(sorted(tuple(p.ids) for p in prompts))
        return compute(model, prompts, *args, **kw)
    memit.compute_delta = capture
    try:
        for answered in ((), [(relations.cues(a.fact)[0], None)], wordings):
            ed.swap(ed.rehearse("a", wordings, steps=1, answered=answered))
    finally:
        memit.compute_delta = compute
    assert seen[1] == seen[0]                 # the cue it was written with: not twice
    more = Counter(seen[2]) - Counter(seen[0])
    assert more and set(more) <= set(seen[0])  # the answered ones join (here: the same texts)


def test_a_units_questions_are_also_trained_after_an_earlier_turn(tiny, monkeypatch):
    """A question asked after another turn reads other inputs at its anchor: the gate is
    trained open on each question after each of EARLIER_TURNS (positives with the further
    wordings, not kept as the memory's keys), and the v* search trains the first question
    after the first `later_turns` of them — keyed in the question, not in the turn before it."""
    from sleepllm import editor as editor_mod
    from sleepllm import neurons

    model, tok = tiny
    fact = Fact("user", "name", "Rex", "dog")
    sib = editor_mod.sibling_turn(fact, model, tok, None, {})    # the model as the write sees it
    turns = ([sib] if sib else []) + editor_mod.EARLIER_TURNS
    later = editor_mod.later_prompts(fact, tok, None, 2, turns)
    assert len(later) == 2 * len(turns)
    first_q = relations.questions(fact)[0][0]
    for i, p in enumerate(later):
        text = tok.decode(p.ids)
        turn = turns[i % len(turns)]
        assert turn[0] in text and turn[1] in text
        asked = text.rindex(relations.questions(fact)[i // len(turns)][0])
        assert text.index(turn[1]) < asked                       # the turn comes first
        for _, t in p.keys:                                       # keyed in the question,
            assert len(tok.decode(p.ids[:t + 1])) > asked
            assert tok.decode(p.ids[:t + 1]).endswith("dog")     # at "dog"
        assert tok.decode(p.ids[p.target_start:]).startswith(
            relations.questions(fact)[i // len(turns)][1])      # the whole answer follows
    seen = {}
    real_fit, real_delta = neurons.fit, memit.compute_delta

    def fit(pos, ordinary, hard=None, others=None, more=None, told=None, strangers=None):
        seen["pos"], seen["more"] = len(pos), more
        return real_fit(pos, ordinary, hard, others, more, told, strangers)

    def delta(model_, prompts, *a, **k):
        seen.setdefault("trained", [tok.decode(p.ids) for p in prompts])
        return real_delta(model_, prompts, *a, **k)

    monkeypatch.setattr(neurons, "fit", fit)
    monkeypatch.setattr(memit, "compute_delta", delta)
    ed = make_editor(model, tok, method="neurons", v_steps=4, later_turns=2)
    L = ed.neuron_layer
    a = ed.write(fact, "a")
    rows = memit.mlp_inputs(model, [editor_mod.later_prompts(fact, tok, None, ed.hp.questions,
                                                              turns)], L)
    assert len(seen["more"]) >= len(rows)
    np.testing.assert_allclose(seen["more"][-len(rows):], rows, atol=1e-5)
    assert len(a.keys[L]) == seen["pos"] + len(seen["more"]) - len(rows)   # not kept
    for k, (asked, answered) in enumerate(turns):
        with_turn = [t for t in seen["trained"] if asked in t]
        assert len(with_turn) == (1 if k < 2 else 0)
        assert all(t.index(answered) < t.rindex(first_q) for t in with_turn)


def test_a_facts_sibling_is_the_nearest_other_thing_of_its_kind():
    """The turn a question about a memory most likely follows: the family's next noun (not a
    synonym), the same thing of another person, the next family without a noun; its answer
    says the object the model continues the sibling's cue with, as a memory would say it."""
    from sleepllm.editor import stated_object

    sib = relations.sibling
    assert sib(Fact("user", "name", "Rex", "dog")) == Fact("user", "name", "", "cat")
    assert sib(Fact("user", "name", "Ann", "mother")).noun == "father"
    assert sib(Fact("user", "name", "Ann", "grandma")).noun == "dog"       # not listed
    assert sib(Fact("user", "name", "Ann", "mom")).noun not in ("mom", "mother")
    assert sib(Fact("user", "name", "Ann", "dad")).noun not in ("dad", "father")
    assert sib(Fact("user", "favorite", "red", "color")) == \
        Fact("user", "favorite", "", "food")
    assert sib(Fact("Anna", "lives_in", "Oslo")) == Fact("Tom", "lives_in", "")
    assert sib(Fact("Greta", "name", "Rex", "dog")) == Fact("Anna", "name", "", "dog")
    assert sib(Fact("user", "lives_in", "Oslo")) == Fact("user", "born_in", "")
    assert sib(Fact("user", "habit", "the gym", "go to")) is None
    for f in [Fact("user", r, "x") for r in relations.FAMILIES if r not in relations.MANY]:
        s = sib(f)
        assert s is not None and s.key() != f.key() and relations.questions(s)
    assert stated_object(' "Luna". She is a cat') == "Luna"
    assert stated_object(" Dr. Quisling, who lives next door") == "Dr. Quisling"
    assert stated_object(" Mr. Okafor.") == "Mr. Okafor"
    assert stated_object(" Margaret and she is kind") == "Margaret"
    assert stated_object(" New York\nI like") == "New York"
    assert stated_object(" a nurse. I") == "a nurse"
