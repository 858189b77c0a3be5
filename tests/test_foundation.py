import os
import stat
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

from sleepllm import chat, config
from sleepllm.blas import blas_in_use, is_reference
from sleepllm.config import data_dir, load_config, memory_dir
from sleepllm.gguf import _unpermute
from sleepllm.relations import Fact

VENV_BIN = os.path.dirname(sys.executable)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux BLAS selection")
def test_fast_blas_is_loaded_and_correct():
    name = blas_in_use()
    assert not is_reference(name), name
    a = np.random.default_rng(0).standard_normal((128, 96)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((96, 64)).astype(np.float32)
    np.testing.assert_allclose(np.array(mx.array(a) @ mx.array(b)), a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux BLAS selection")
def test_importing_mlx_first_is_reported():
    code = ("import mlx.core; import sleepllm; from sleepllm.blas import blas_in_use; "
            "print(blas_in_use())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "import sleepllm first" in out.stderr
    assert is_reference(out.stdout.strip()), out.stdout


def test_config_precedence_and_unknown_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("temp: 0.5\nmax_tokens: 7\n")
    cfg = load_config(f, {"max_tokens": 9, "system_prompt": None})
    assert cfg["temp"] == 0.5 and cfg["max_tokens"] == 9 and cfg["system_prompt"] is None
    f.write_text("tmep: 0.5\n")
    with pytest.raises(ValueError, match="tmep"):
        load_config(f)


def test_every_default_key_is_read_by_the_code():
    import pathlib

    src = "".join(p.read_text() for p in pathlib.Path("sleepllm").glob("*.py"))
    for key in load_config():
        assert f'"{key}"' in src, f"config key {key} is read nowhere"


def test_data_and_memory_dirs_are_private(_temp_home):
    d = data_dir()
    assert d == _temp_home
    m = memory_dir(load_config())
    assert m.parent.parent == d
    for p in (d, m):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700


def test_unpermute_inverts_gguf_rope_order():
    n_head, hd, inp = 3, 8, 5
    w = mx.arange(n_head * hd * inp, dtype=mx.float32).reshape(n_head * hd, inp)
    # GGUF's converter permutation: per head, halves -> interleaved
    permuted = w.reshape(n_head, 2, hd // 2, inp).swapaxes(1, 2).reshape(n_head * hd, inp)
    assert mx.array_equal(_unpermute(permuted, n_head), w)


def test_fit_drops_oldest_turns(tiny):
    _, tok = tiny
    conv = chat.Conversation()
    for i in range(6):
        conv.messages += [{"role": "user", "content": f"question {i} " * 5},
                          {"role": "assistant", "content": f"answer {i} " * 5}]
    conv.messages.append({"role": "user", "content": "last"})
    full = len(chat.render(tok, conv.messages))
    tokens = chat.fit(tok, conv, full // 2)
    assert len(tokens) <= full // 2
    assert conv.dropped > 0 and conv.messages[-1]["content"] == "last"
    assert conv.messages[0]["role"] == "user"
    conv.messages = [{"role": "user", "content": "x" * 1000}]
    with pytest.raises(ValueError, match="too long"):
        chat.fit(tok, conv, 50)


def test_vectorised_exp_and_swiglu_match_mlx_values_and_gradients():
    import mlx.nn as nn

    from sleepllm import cpu_ops

    x = np.linspace(-87, 88, 200001, dtype=np.float32)
    ref = np.exp(x.astype(np.float64))
    got = np.array(cpu_ops.exp(mx.array(x))).astype(np.float64)
    assert np.max(np.abs(got - ref) / ref) < 2e-7      # MLX's own CPU exp: ~4e-6
    assert np.array(cpu_ops.exp(mx.array([-200.0, -88.0])))[0] == 0.0

    mx.random.seed(3)
    g, u = 6 * mx.random.normal((3, 50, 64)), mx.random.normal((3, 50, 64))   # > cpu_ops.SMALL
    want = nn.silu(g) * u
    np.testing.assert_allclose(np.array(cpu_ops.swiglu(g, u)), np.array(want), rtol=1e-5, atol=1e-6)
    loss = lambda f: (lambda a, b: (f(a, b) * mx.cos(a)).sum())
    d_ref = mx.grad(loss(lambda a, b: nn.silu(a) * b), argnums=(0, 1))(g, u)
    d_new = mx.grad(loss(cpu_ops.swiglu), argnums=(0, 1))(g, u)
    for a, b in zip(d_new, d_ref):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-5)
    half = cpu_ops.swiglu(g.astype(mx.bfloat16), u.astype(mx.bfloat16))
    assert half.dtype == mx.bfloat16


def test_vectorised_swiglu_in_a_model_gives_the_same_greedy_outputs(tiny):
    import mlx_lm.models.llama as llama

    from sleepllm import cpu_ops

    model, tok = tiny
    was = cpu_ops.active(model)
    original = llama._mlx_swiglu if was else llama.swiglu
    ids = mx.array([tok.encode("the quick brown fox jumps over the lazy dog " * 3)])
    try:
        assert not cpu_ops.install(model, False) and llama.swiglu is original
        base = model(ids)
        assert cpu_ops.install(model, True) and llama.swiglu is cpu_ops.swiglu
        fast = model(ids)
        np.testing.assert_allclose(np.array(fast), np.array(base), rtol=1e-4, atol=1e-4)
        assert (np.array(fast.argmax(-1)) == np.array(base.argmax(-1))).all()
    finally:
        cpu_ops.install(model, was)


def test_greedy_is_argmax(tiny):
    model, tok = tiny
    prompt = chat.render(tok, [{"role": "user", "content": "hello"}])
    out = [r.token for r in chat.generate(model, tok, prompt, max_tokens=5, temp=0.0)]
    ids = list(prompt)
    for t in out:
        logits = model(mx.array([ids]))[0, -1]
        assert int(mx.argmax(logits)) == t
        ids.append(t)


def test_a_reply_never_repeats_its_own_ngram(tiny):
    """Greedy decoding of a random tiny model loops; with no_repeat_ngram 4 the reply has no
    4-gram twice, is the plain greedy reply up to the first repeat, and is greedy among the
    tokens left (every step: the argmax of the logits with the banned tokens removed)."""
    model, tok = tiny
    prompt = chat.render(tok, [{"role": "user", "content": "hello there"}])
    grams = lambda t: [tuple(t[i:i + 4]) for i in range(len(t) - 3)]
    plain = [r.token for r in chat.generate(model, tok, prompt, max_tokens=60)]
    assert len(set(grams(plain))) < len(grams(plain))                   # it does loop
    fixed = [r.token for r in chat.generate(model, tok, prompt, max_tokens=60, no_repeat_ngram=4)]
    assert len(set(grams(fixed))) == len(grams(fixed))
    first = next(i for i, g in enumerate(grams(plain)) if g in grams(plain)[:i]) + 3
    assert fixed[:first] == plain[:first] and fixed[first] != plain[first]
    ids = list(prompt)
    for k, t in enumerate(fixed):
        logits = np.array(model(mx.array([ids]))[0, -1])
        for g in grams(fixed[:k]):
            if list(g[:3]) == fixed[k - 3:k]:
                logits[g[3]] = -np.inf
        assert int(np.argmax(logits)) == t
        ids.append(t)


@pytest.mark.integration
def test_default_model_answers_capital(default_model):
    model, tok = default_model
    prompt = chat.render(tok, [{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in chat.complete(model, tok, prompt, 20)


def _run(args, stdin="", env=None, home=None):
    """The first chat of a test run computes the default model's key statistics (~95 s
    idle here); on a shared CPU that took over 300 s once, so the bound is the integration
    tests' (test_integration.chat)."""
    e = dict(os.environ, **(env or {}))
    return subprocess.run([os.path.join(VENV_BIN, "sleepllm"), *args], input=stdin,
                          capture_output=True, text=True, env=e, timeout=1800)


@pytest.mark.integration
def test_script_mode_chat_and_version(default_model_path):
    r = _run(["chat", "--model", default_model_path], "What is the capital of France?\n")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    v = _run(["--version"])
    assert v.returncode == 0 and "BLAS" in v.stdout and "mlx-lm" in v.stdout
    if sys.platform == "linux":
        assert "reference" not in v.stdout
    if os.uname().machine == "x86_64":
        assert "SwiGLU sleepllm's vectorised exp" in v.stdout


def test_batched_probes_are_greedy_and_stop_when_told(tiny):
    """probes.generate (continuous batching, shared-prefix caches) continues each prompt as
    greedy argmax decoding would; with `until`, a prompt stops at the first token after which
    its predicate holds, its text a prefix of the full one."""
    from sleepllm import probes

    model, tok = tiny
    prompts = [chat.render(tok, [{"role": "user", "content": q}])
               for q in ("hello", "what is my dog's name?", "where do I live?")]
    prompts += [tok.encode("My dog's name is"), tok.encode("I live in a small town near")]
    outs = probes.generate(model, tok, prompts, max_tokens=6, batch_size=2)
    greedy = []
    for ids, text in zip(prompts, outs):
        ids, want = list(ids), []
        for _ in range(6):
            t = int(mx.argmax(model(mx.array([ids]))[0, -1]))
            if t in tok.eos_token_ids:
                break
            want.append(t)
            ids.append(t)
        assert text == tok.decode(want)
        greedy.append(want)
    # stop each prompt once its text is at least 3 characters long
    cut = probes.generate(model, tok, prompts, max_tokens=6, batch_size=2,
                          until=[lambda s: len(s) >= 3] * len(prompts))
    for want, short in zip(greedy, cut):
        k = next((k for k in range(1, len(want) + 1) if len(tok.decode(want[:k])) >= 3),
                 len(want))
        assert short == tok.decode(want[:k])

    # drafts: verified in one pass, the outputs are the same greedy texts, whether the draft
    # is the greedy continuation, its first tokens then a wrong one, or wrong from the start
    until = [lambda s: len(s) >= 12] * len(prompts)
    plain = probes.generate(model, tok, prompts, max_tokens=6, batch_size=2, until=until)
    for drafts in ([w + [1, 2] for w in greedy],
                   [w[:2] + [(w[2] + 1) % 50 if len(w) > 2 else 3] for w in greedy],
                   [[(w[0] + 1) % 50 if w else 3] for w in greedy]):
        g = probes.greedy_prefix(model, prompts, drafts, batch_size=2)
        for want, got in zip(greedy, g):
            n = min(len(want), len(got))
            assert got[:n] == want[:n]          # greedy tokens, as far as the draft showed them
        assert probes.generate(model, tok, prompts, max_tokens=6, batch_size=2, until=until,
                               drafts=drafts) == plain
    # without `until` (full-length probes), drafts of the whole output settle them too, and a
    # prompt without a draft (None) is generated as usual
    full = [w + [1, 2] for w in greedy]
    full[1] = None
    assert probes.generate(model, tok, prompts, max_tokens=6, batch_size=2, drafts=full) == outs
    # the right drafts settle every prompt without a token-by-token step
    g = probes.greedy_prefix(model, prompts, [w + [1, 2] for w in greedy], batch_size=2)
    eos = set(tok.eos_token_ids)
    assert [probes._settled(tok, x, u, eos, 6) for x, u in zip(g, until)] == plain


def test_eval_probes_with_guesses_give_the_plain_outputs(tiny):
    """The eval's guesses (a raw cue's object, the base model's text, the outputs before
    sleep) only save steps: right, half right or wrong, the outputs are the plain ones, in
    the order of the items."""
    from sleepllm import evaluate

    model, tok = tiny
    facts = [{"object": "Rex", "prompt": "My dog's name is", "questions": ["What is my dog's name?"],
              "paraphrases": ["What's my dog called?"], "neighbors": ["The dog in the story is"]},
             {"object": "Ghent", "prompt": "Aria lives in", "questions": ["Where does Aria live?"],
              "paraphrases": [], "neighbors": ["Orla lives in"]}]
    items = evaluate.probe_set(facts, tok)
    plain = evaluate.run_probes(model, tok, items, facts)
    assert [p[:3] for p in plain] == items
    texts = [t for *_, t in plain]
    for guesses in (evaluate.first_guesses(items, facts, plain), texts,
                    [t[: len(t) // 2] + " zebra" for t in texts], [None] * len(items)):
        assert evaluate.run_probes(model, tok, items, facts, guesses) == plain


def test_eval_scores_probes_worded_unlike_the_written_facts_apart(tiny):
    """`seen_wordings` of the facts written: a probe in one of their wordings counts in the
    overall recall only; a probe in other words counts in the *_unseen recall too."""
    from sleepllm import evaluate
    from sleepllm.relations import Fact

    _, tok = tiny
    facts = [{"object": "Rex", "prompt": "My dog's name is", "questions": ["What is my dog's name?"],
              "paraphrases": ["What's my dog called?", "Which pup is mine?"], "neighbors": []}]
    seen = evaluate.seen_wordings([[Fact("user", "name", "Rex", "dog")]])
    assert "What is my dog's name?" in seen[0] and "Which pup is mine?" not in seen[0]
    items = evaluate.probe_set(facts, tok)
    said = {"raw": " Rex.", "chat": "Rex.", "para": "I don't know."}
    base = [(k, i, ids, "") for k, i, ids in items]
    after = [(k, i, ids, said.get(k, "")) for k, i, ids in items]
    agg, _ = evaluate.score(facts, base, after, tok, ["Rex"], seen)
    assert agg["unseen_probes"] == {"raw": 0, "chat": 0, "para": 1}
    assert agg["paraphrase_recall_unseen"] == 0.0 and agg["raw_recall"] == 1.0
    assert agg["raw_recall_unseen"] is None      # no unseen raw probe: no figure, not 0
    agg, _ = evaluate.score(facts, base, after, tok, ["Rex"])
    assert "unseen_probes" not in agg


def test_eval_scores_neighbour_cues_that_ask_for_a_told_fact_apart(tiny):
    """A neighbour cue that is a written fact's own statement cue ("Jarek lives in the city
    of", when Jarek's home was told too) is counted in `neighbors_told`, and only the others
    in `neighbors_unchanged_untold`; `neighbors_unchanged` still counts every cue."""
    from sleepllm import evaluate
    from sleepllm.relations import Fact

    _, tok = tiny
    facts = [{"object": "Teal", "prompt": "Jarek's favorite color is", "questions": [],
              "paraphrases": [], "neighbors": ["Jarek lives in the city of", "Oda works as a"]},
             {"object": "Lyon", "prompt": "Jarek lives in the city of", "questions": [],
              "paraphrases": [], "neighbors": ["Tove lives in the city of"]}]
    written = [[Fact("Jarek", "favorite", "Teal", "color")], [Fact("Jarek", "lives_in", "Lyon")]]
    told = evaluate.told_cues(written)
    assert "jarek lives in the city of" in told and "oda works as a" not in told
    items = evaluate.probe_set(facts, tok)
    base = [(k, i, ids, " Paris, a big city." if k == "neighbor" else "") for k, i, ids in items]
    now = {"Jarek lives in the city of": " Lyon.", "Oda works as a": " Paris, a big city.",
           "Tove lives in the city of": " Lyon, a big city."}
    after, seen = [], {}
    for k, i, ids in items:
        j = seen[i, k] = seen.get((i, k), -1) + 1
        after.append((k, i, ids, now[facts[i]["neighbors"][j]] if k == "neighbor" else ""))
    agg, _ = evaluate.score(facts, base, after, tok, ["Teal", "Lyon"], None, told)
    assert agg["neighbors_told"] == 1
    assert agg["neighbors_unchanged_untold"] == 0.5       # Oda unchanged, Tove now says Lyon
    assert abs(agg["neighbors_unchanged"] - 1 / 3) < 1e-9


def test_an_audit_checks_its_earlier_outputs_and_gives_the_plain_verdicts(tiny):
    """Sleep's later audits pass each probe's earlier output as its draft: the outputs and
    verdicts are the plain audit's whether those drafts are right or wrong, and right ones
    spare the token-by-token steps (the tiny model answers nothing it was trained to, so
    the first audit generates every probe)."""
    from sleepllm import probes

    model, tok = tiny
    facts = {"a": Fact("user", "name", "Rex", "dog"), "b": Fact("Aria", "lives_in", "Ghent")}
    first, again, wrong = {}, {}, {}
    plain = probes.audit(model, tok, facts, stats=first)
    assert first["generated"] == 3 * len(facts)
    assert probes.audit(model, tok, facts, previous=plain, stats=again) == plain
    assert again["generated"] < first["generated"]
    off = {i: {**r, "texts": [t[: len(t) // 2] + " zebra" for t in r["texts"]]}
           for i, r in plain.items()}
    assert probes.audit(model, tok, facts, previous=off, stats=wrong) == plain
    assert wrong["generated"] == first["generated"]


def test_key_value_overrides_keep_types_and_refuse_unknown_keys():
    over = config.parse_overrides(["lam=1500", "contrast=0", "nullspace=0.005", "layers=[3, 4]"])
    cfg = config.load_config(None, over)
    assert cfg["editor"]["lam"] == 1500 and cfg["editor"]["nullspace"] == 0.005
    assert cfg["editor"]["layers"] == [3, 4]
    with pytest.raises(ValueError, match="unknown config key"):
        config.load_config(None, config.parse_overrides(["no_such_key=1"]))
    with pytest.raises(ValueError, match="unknown config section 'editr'"):
        config.load_config(None, {"editr.lam": 1})
    with pytest.raises(ValueError, match="key=value"):
        config.parse_overrides(["lam"])
    assert config.parse_overrides(["lam=20"], section=None) == {"lam": 20}
