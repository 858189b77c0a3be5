"""Durability and on-disk behaviour of a memory folder, on tiny random Llamas."""
import os
import stat

import numpy as np
import pytest
from mlx_lm import load

from sleepllm import memit, sleep, store
from sleepllm.memory import Memory
from sleepllm.relations import Fact
from sleepllm.repl import Session, handle_command
from test_editor import tiny_cfg

FACTS = [Fact("user", "name", "Rex", "dog"), Fact("Aria", "lives_in", "Ghent"),
         Fact("user", "favorite", "teal", "color")]


def open_mem(model_dir, folder):
    model, tok = load(str(model_dir))
    return Memory(folder, model, tok, tiny_cfg(), "tiny")


def down(mem):
    return {l: np.array(memit._layers(mem.editor.model)[l].mlp.down_proj.weight)
            for l in mem.editor.hp.layers}


def same(a, b, atol=1e-6):
    return all(np.allclose(a[l], b[l], atol=atol) for l in a)


def test_journal_replay_restores_exact_weights(tiny_model_dir, tmp_path):
    mem = open_mem(tiny_model_dir, tmp_path / "m")
    for f in FACTS[:2]:
        mem.learn(f, "said")
    w = down(mem)
    again = open_mem(tiny_model_dir, tmp_path / "m")       # a new start: journal only
    assert list(again.records) == list(mem.records)
    assert all(r["status"] == "pending" for r in again.records.values())
    assert same(down(again), w)


def test_checkpoint_then_journal_and_private_files(tiny_model_dir, tmp_path):
    mem = open_mem(tiny_model_dir, tmp_path / "m")
    mem.learn(FACTS[0])
    mem.checkpoint()
    mem.learn(FACTS[1])
    w = down(mem)
    assert store.journal_read(mem.journal)[0]["id"] == "m0002"
    again = open_mem(tiny_model_dir, tmp_path / "m")
    assert [r["status"] for r in again.records.values()] == ["consolidated", "pending"]
    assert same(down(again), w)
    for root, dirs, files in os.walk(tmp_path / "m"):
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode) == 0o700
        for f in files:
            assert stat.S_IMODE(os.stat(os.path.join(root, f)).st_mode) == 0o600, f


def test_correction_supersedes_and_duplicate_is_ignored(tiny_model_dir, tmp_path):
    mem = open_mem(tiny_model_dir, tmp_path / "m")
    a, _ = mem.learn(FACTS[0])
    dup, sup = mem.learn(Fact("user", "name", "rex", "dog"))
    assert dup == a and sup is None and len(mem.records) == 1
    b, sup = mem.learn(Fact("user", "name", "Max", "dog"))
    assert sup == a and list(mem.records) == [b]
    assert list(mem.editor.edits) == [b]
    again = open_mem(tiny_model_dir, tmp_path / "m")
    assert list(again.records) == [b]


def test_forget_is_exact_and_leaves_no_trace(tiny_model_dir, tmp_path):
    mem = open_mem(tiny_model_dir, tmp_path / "m")
    w0 = down(mem)
    mem.learn(FACTS[0], "My dog's name is Rex.")
    mem.checkpoint()
    mem.learn(FACTS[2], "My favorite color is teal.")
    mem.forget("m0001")
    mem.forget("m0002")
    assert same(down(mem), w0)
    for root, _, files in os.walk(tmp_path / "m"):
        for f in files:
            data = open(os.path.join(root, f), "rb").read()
            assert b"Rex" not in data and b"teal" not in data, f


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tiny_model_dir, tmp_path):
    mem = open_mem(tiny_model_dir, tmp_path / "m")
    mem.learn(FACTS[0])
    first = mem.checkpoint()
    w1 = down(mem)
    mem.learn(FACTS[1])
    second = mem.checkpoint()
    path = tmp_path / "m" / "checkpoints" / second / "edits.safetensors"
    path.write_bytes(path.read_bytes()[:100])                   # truncated
    again = open_mem(tiny_model_dir, tmp_path / "m")
    assert again.checkpoint_name == first
    assert any("truncated" in w for w in again.warnings)
    assert all("\n" not in w for w in again.warnings)
    assert same(down(again), w1)


def test_checkpoint_of_another_model_is_refused(tiny_model_dir, tmp_path):
    from conftest import make_tiny_model_dir

    mem = open_mem(tiny_model_dir, tmp_path / "m")
    mem.learn(FACTS[0])
    mem.checkpoint()
    other = make_tiny_model_dir(tmp_path / "other", seed=1)
    again = open_mem(other, tmp_path / "m")
    assert again.records == {}
    assert any("was made for model 'tiny'" in w and "--model" in w for w in again.warnings)


def test_no_fact_enters_the_prompt(tiny_model_dir, tmp_path):
    from rich.console import Console

    mem = open_mem(tiny_model_dir, tmp_path / "m")
    cfg = dict(mem.cfg, max_tokens=64)
    s = Session(mem.editor.model, mem.editor.tokenizer, "tiny", cfg, 512, mem)
    console = Console(file=open(os.devnull, "w"))
    s.learn_from("My dog's name is Rex. My favorite color is teal.", console)
    assert len(mem.records) == 2
    s.learn_from("My sister is called Delphine.", console)    # "she" in the next message
    s.learn_from("She lives in Lyon.", console)
    assert Fact("my sister", "lives_in", "Lyon") in mem.active().values()
    handle_command(s, "/clear", console)
    s.learn_from("She works as a nurse.", console)               # after /clear: nobody
    assert len(mem.records) == 4
    handle_command(s, "/clear", console)
    s.conv.messages.append({"role": "user", "content": "What is my dog's name?"})
    text = s.tokenizer.decode(s.prompt_tokens())
    assert "Rex" not in text and "teal" not in text
    fresh = Session(mem.editor.model, mem.editor.tokenizer, "tiny", cfg, 512, mem)
    fresh.conv.messages.append({"role": "user", "content": "hi"})
    assert "Rex" not in fresh.tokenizer.decode(fresh.prompt_tokens())


def test_a_noted_fact_survives_a_crash_before_its_edit(tiny_model_dir, tmp_path):
    """Told and acknowledged, then the process dies before the edit is written: the next
    start finds the note in the journal and learns it, into the weights it would have had."""
    mem = open_mem(tiny_model_dir, tmp_path / "m")
    mem.learn(FACTS[0], "My dog's name is Rex.")
    fid, new = mem.note(FACTS[2], "My favorite color is teal.")
    assert (fid, new) == ("m0002", True)
    assert mem.note(Fact("user", "favorite", "Teal", "color")) == ("m0002", False)
    assert mem.counts()["noted"] == 1
    del mem                                                    # "crash": no learn_next
    again = open_mem(tiny_model_dir, tmp_path / "m")
    assert list(again.records) == ["m0001"] and [e["id"] for e in again.queue] == ["m0002"]
    assert again.find("teal") == ["m0002"]
    assert [e["id"] for e in store.journal_notes(again.journal)] == ["m0002"]
    assert again.note(FACTS[1])[0] == "m0003"                 # ids are never reused
    again.learn_noted()
    assert list(again.records) == ["m0001", "m0002", "m0003"] and again.queue == []
    assert store.journal_notes(again.journal) == []
    direct = open_mem(tiny_model_dir, tmp_path / "d")
    for f in (FACTS[0], FACTS[2], FACTS[1]):
        direct.learn(f)
    assert same(down(again), down(direct))


def test_a_note_journalled_without_its_text_gets_it_from_its_fact(tmp_path):
    """Notes written before they carried "text" still load: the REPL's toolbar, /facts and
    sleep's progress read it."""
    journal = tmp_path / "journal.jsonl"
    fact = Fact("user", "name", "Rex", "dog")
    store.journal_append(journal, {"op": "note", "id": "m0001", "fact": fact.to_dict(),
                                   "statement": "My dog's name is Rex.", "noted_at": 0})
    (note,) = store.journal_notes(journal)
    assert note["text"] == "your dog's name → Rex"


def test_checkpoint_keeps_the_facts_still_noted(tiny_model_dir, tmp_path):
    mem = open_mem(tiny_model_dir, tmp_path / "m")
    mem.learn(FACTS[0])
    mem.note(FACTS[1], "My friend Aria lives in Ghent.")
    mem.checkpoint()
    assert [(e["op"], e["id"]) for e in store.journal_read(mem.journal)] == [("note", "m0002")]
    again = open_mem(tiny_model_dir, tmp_path / "m")
    assert [r["status"] for r in again.records.values()] == ["consolidated"]
    assert [e["id"] for e in again.queue] == ["m0002"]
    rec = again.forget("m0002")                                 # forgetting a noted fact
    assert rec["id"] == "m0002" and again.queue == []
    assert b"Ghent" not in again.journal.read_bytes()
    assert list(open_mem(tiny_model_dir, tmp_path / "m").records) == ["m0001"]


def test_background_learning_writes_the_weights_waiting_would(tiny_model_dir, tmp_path):
    """The REPL notes a fact and learns it on the Learner's thread; the main thread then
    replies with the edited model. Same weights as learning in the foreground."""
    from io import StringIO

    from rich.console import Console

    text = "My dog's name is Rex. My friend Aria lives in Ghent."
    outs = {}
    for name, wait in (("bg", False), ("fg", True)):
        mem = open_mem(tiny_model_dir, tmp_path / name)
        s = Session(mem.editor.model, mem.editor.tokenizer, "tiny", dict(mem.cfg, max_tokens=8),
                    512, mem)
        out = StringIO()
        console = Console(file=out, width=200)
        ids = s.learn_from(text, console, wait=wait)
        assert ids == ["m0001", "m0002"]
        if not wait:
            assert "noted" in out.getvalue() and "learned" not in out.getvalue()
            s.learner.thread.join()
            assert s.learner.finished() == "m0001, m0002"            # the toolbar's text
            s.settle(console)
            assert s.learner.finished() == ""
        assert not s.learner.busy() and mem.queue == []
        assert out.getvalue().count("learned") == 2, out.getvalue()
        assert list(mem.records) == ids
        s.reply("hello", lambda t: None)                        # the model, used again
        assert s.learn_from("My dog's name is Rex.", console, wait=wait) == []
        assert "already known [m0001]" in out.getvalue() and not s.learner.busy()
        outs[name] = down(mem)
    assert same(outs["bg"], outs["fg"], atol=0)


def test_a_reply_runs_between_two_steps_of_a_write(tiny_model_dir, tmp_path):
    """A reply does not wait for the Learner: it stops at its next pause point, no step of
    the write runs while the reply generates, and the write goes on after. A message noted
    meanwhile is journalled beside the write's entries and learned by the same thread. The
    weights are those of learning in the foreground."""
    import threading
    import time
    from io import StringIO

    from rich.console import Console

    mem = open_mem(tiny_model_dir, tmp_path / "bg")
    s = Session(mem.editor.model, mem.editor.tokenizer, "tiny", dict(mem.cfg, max_tokens=8),
                512, mem)
    console = Console(file=StringIO(), width=200)
    steps, reached, asked = [], threading.Event(), threading.Event()
    real = s.learner._pause

    def counted():                       # the Learner's pause points, counted
        steps.append(mem.editor.edits.copy())
        if len(steps) == 3:              # mid-write: go on once the reply is asked for
            reached.set()
            asked.wait(30)
        real()

    s.learner._pause = counted
    assert s.learn_from("My dog's name is Rex.", console, wait=False) == ["m0001"]
    assert reached.wait(60)
    seen = []
    asked.set()
    s.reply("hello", lambda t: (seen.append(len(steps)), time.sleep(0.02)))
    assert seen and len(set(seen)) == 1, seen          # no step while the reply generated
    assert steps[seen[0] - 1] == {}                    # ... in the middle of the first write
    assert s.learn_from("My friend Aria lives in Ghent.", console, wait=False) == ["m0002"]
    assert s.learner.busy()
    s.settle(console)
    assert len(steps) > seen[0] and list(mem.records) == ["m0001", "m0002"]
    assert [(e["op"], e["id"]) for e in store.journal_read(mem.journal)] == \
        [("note", "m0001"), ("note", "m0002"), ("learn", "m0001"), ("learn", "m0002")]
    again = open_mem(tiny_model_dir, tmp_path / "bg")
    assert list(again.records) == ["m0001", "m0002"] and again.queue == []
    fg = open_mem(tiny_model_dir, tmp_path / "fg")
    for f in FACTS[:2]:
        fg.learn(f)
    assert same(down(mem), down(fg), atol=0) and same(down(again), down(fg), atol=0)


def test_a_correction_noted_behind_its_fact_supersedes_it(tiny_model_dir, tmp_path):
    """'My dog is Rex' then 'actually Max' before the Learner reached either: learned in
    order, the second replaces the first, and nothing of the first is left on disk."""
    mem = open_mem(tiny_model_dir, tmp_path / "m")
    w0 = down(mem)
    a, _ = mem.note(FACTS[0], "My dog's name is Rex.")
    b, _ = mem.note(Fact("user", "name", "Max", "dog"), "Actually my dog is called Max.")
    assert mem.note(FACTS[0])[0] == a                  # still noted: a duplicate of it
    assert [mem.learn_next(), mem.learn_next()] == [(a, None), (b, a)]
    assert list(mem.records) == [b] and list(mem.editor.edits) == [b]
    mem.forget(b)
    assert same(down(mem), w0)
    assert b"Rex" not in mem.journal.read_bytes()


def test_an_edit_that_fails_is_reported_and_its_fact_stays_noted(tiny_model_dir, tmp_path,
                                                                  monkeypatch):
    """Fault injection (the editor raising, as a shape mismatch would): the Learner stops,
    settle says so, the fact stays in the journal and the next message tries it again."""
    from io import StringIO

    from rich.console import Console

    mem = open_mem(tiny_model_dir, tmp_path / "m")
    s = Session(mem.editor.model, mem.editor.tokenizer, "tiny", dict(mem.cfg, max_tokens=8),
                512, mem)
    out = StringIO()
    console = Console(file=out, width=200)
    real = mem.editor.write

    def broken(*a, **k):
        raise ValueError("down_proj has another shape")

    monkeypatch.setattr(mem.editor, "write", broken)
    assert s.learn_from("My dog's name is Rex.", console, wait=True) == ["m0001"]
    assert "could not learn [m0001]" in out.getvalue() and "another shape" in out.getvalue()
    assert mem.records == {} and [e["id"] for e in mem.queue] == ["m0001"]
    assert [e["id"] for e in store.journal_notes(mem.journal)] == ["m0001"]
    monkeypatch.setattr(mem.editor, "write", real)
    s.learn_from("My favorite color is teal.", console, wait=True)
    assert list(mem.records) == ["m0001", "m0002"] and mem.queue == []


@pytest.mark.parametrize("method", ["memit", "neurons"])
def test_export_is_a_plain_mlx_lm_folder_with_the_memories_fused_in(tiny_model_dir, tmp_path,
                                                                    method):
    """`sleepllm export`: plain mlx_lm.load of the folder gives the model sleepllm runs —
    checkpointed and journalled memories fused in, edited layers float32 — not the base one.
    Memory neurons widen one MLP: every other is padded with zero units to its width."""
    import mlx.core as mx
    import yaml

    from sleepllm import cli
    from test_editor import TINY_EDITOR

    model, tok = load(str(tiny_model_dir))
    folder = tmp_path / "m"
    mem = Memory(folder, model, tok, tiny_cfg(method=method), str(tiny_model_dir))
    for f in FACTS[:2]:
        mem.learn(f)
    mem.checkpoint()
    mem.learn(FACTS[2])                                # pending: in the journal only
    conf = tmp_path / "tiny.yaml"
    conf.write_text(yaml.safe_dump({"model": str(tiny_model_dir),
                                    "editor": {**TINY_EDITOR, "method": method}}))
    out = tmp_path / "exported"
    assert cli.main(["export", "--config", str(conf), "--memory", str(folder),
                     "--out", str(out)]) == 0
    exported, _ = load(str(out))
    base, _ = load(str(tiny_model_dir))
    ids = mx.array([tok.encode("My dog's name is")])
    np.testing.assert_allclose(np.array(exported(ids)), np.array(model(ids)), atol=1e-5)
    assert not np.allclose(np.array(base(ids)), np.array(model(ids)), atol=1e-4)
    for l in mem.editor.hp.layers:
        assert memit._layers(exported)[l].mlp.down_proj.weight.dtype == mx.float32


@pytest.mark.parametrize("method", ["memit", "neurons"])
def test_a_4bit_model_learns_sleeps_restarts_and_exports(tiny_model_dir, tmp_path, method):
    """The Mac path without Metal: a model quantized as mlx-community ships them (4-bit
    embedding and linears, one edited layer 8-bit by a per-layer entry in config.json) is
    edited in float32 layers, restarts from its folder to the same logits, and exports a folder
    that plain mlx_lm.load runs as the edited model, the edited layers unquantized."""
    import json

    import mlx.core as mx
    import mlx.nn as nn
    import yaml

    from conftest import quantize_model_dir
    from sleepllm import cli
    from test_editor import TINY_EDITOR

    edited = f"model.layers.{TINY_EDITOR['layers'][0]}.mlp.down_proj"
    q = quantize_model_dir(tiny_model_dir, tmp_path / "q4",
                           per_layer={edited: {"group_size": 32, "bits": 8}})
    model, tok = load(str(q))
    assert isinstance(model.model.embed_tokens, nn.QuantizedEmbedding)
    assert memit._layers(model)[TINY_EDITOR["layers"][0]].mlp.down_proj.bits == 8
    base = np.array(model(mx.array([tok.encode("My dog's name is")])))
    folder = tmp_path / "m"
    mem = Memory(folder, model, tok, tiny_cfg(method=method), str(q))
    for f in FACTS[:2]:
        mem.learn(f)
    report = sleep.run(mem)                          # audit, guard, checkpoint
    assert set(report["audit_after"]) == set(mem.records) and report["checkpoint"]
    ids = mx.array([tok.encode("My dog's name is")])
    edited_logits = np.array(model(ids))
    assert not np.allclose(edited_logits, base, atol=1e-4)
    for l in mem.editor.hp.layers:
        lin = memit._layers(model)[l].mlp.down_proj
        assert type(lin) is nn.Linear and lin.weight.dtype == mx.float32

    again, _ = load(str(q))
    Memory(folder, again, tok, tiny_cfg(method=method), str(q))
    np.testing.assert_allclose(np.array(again(ids)), edited_logits, atol=1e-6)

    conf = tmp_path / "q4.yaml"
    conf.write_text(yaml.safe_dump({"model": str(q), "editor": {**TINY_EDITOR, "method": method}}))
    out = tmp_path / "exported"
    assert cli.main(["export", "--config", str(conf), "--memory", str(folder),
                     "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["quantization"][edited] is False
    exported, _ = load(str(out))
    np.testing.assert_allclose(np.array(exported(ids)), edited_logits, atol=1e-5)
    assert isinstance(memit._layers(exported)[0].mlp.down_proj, nn.QuantizedLinear)
    for l in mem.editor.hp.layers:
        assert type(memit._layers(exported)[l].mlp.down_proj) is nn.Linear


def test_a_memory_keeps_the_inverse_statistics_not_the_covariance(tiny_model_dir, tmp_path):
    """A memory's editor reads C⁻¹ and not C (half the memory of a wide model's statistics),
    once; C is read when asked for, alone, equal to what C⁻¹ came from."""
    mem = open_mem(tiny_model_dir, tmp_path / "m")
    reads = []
    loader = mem.editor._stats
    mem.editor._stats = lambda parts: reads.append(parts) or loader(parts)
    mem.learn(FACTS[0])
    mem.learn(FACTS[1])
    ed = mem.editor
    assert "cov" not in ed._stats and set(ed.cinv) == set(ed.hp.layers)
    assert reads == [("prefixes", "cinv")]   # writes never read the statistics again
    for l in ed.hp.layers:
        np.testing.assert_allclose(ed.cinv[l] @ ed.cov[l], np.eye(len(ed.cinv[l])), atol=1e-6)
    ed.retune(nullspace=0.5)                 # C's principal directions: C read again
    assert set(ed.principal) == set(ed.hp.layers) and "cov" not in ed._stats
    assert set(reads[1:]) == {("cov",)}


def test_memory_neurons_replay_from_the_journal_and_a_checkpoint_exactly(tiny_model_dir,
                                                                          tmp_path):
    """Memory neurons survive a restart (checkpoint, then journal) bit for bit: the same
    units, in the same order, in the neuron layer's MLP."""
    def units(mem):
        mlp = memit._layers(mem.editor.model)[mem.editor.neuron_layer].mlp
        return [np.array(mlp[n].weight) for n in ("gate_proj", "up_proj", "down_proj")]

    model, tok = load(str(tiny_model_dir))
    mem = Memory(tmp_path / "m", model, tok, tiny_cfg(method="neurons"), "tiny")
    mem.learn(FACTS[0])
    mem.checkpoint()
    mem.learn(FACTS[1])
    w = units(mem)
    assert w[0].shape[0] == w[2].shape[1] == \
        memit._layers(model)[0].mlp.gate_proj.weight.shape[0] + 2
    again, tok = load(str(tiny_model_dir))
    back = Memory(tmp_path / "m", again, tok, tiny_cfg(method="neurons"), "tiny")
    assert [e.kind for e in back.editor.edits.values()] == ["neuron", "neuron"]
    for x, y in zip(units(back), w):
        np.testing.assert_array_equal(x, y)


def test_a_write_notes_the_wordings_its_memory_misses_and_facts_shows_them(tiny_model_dir,
                                                                          tmp_path):
    """After its write a memory is asked every wording the app knows of it (free generation);
    the ledger notes how many and which it missed — in the journal, so a restart has it —
    and `facts` shows answered/of. (The tiny random model answers none of them.)"""
    from rich.console import Console

    from sleepllm import relations
    from sleepllm.repl import show_facts

    model, tok = load(str(tiny_model_dir))
    mem = Memory(tmp_path / "m", model, tok, tiny_cfg(method="neurons"), "tiny")
    fact = Fact("user", "name", "Rex", "dog")
    fid, _ = mem.learn(fact)
    every = relations.every_wording(fact)
    note = mem.records[fid]["wordings"]
    assert note["of"] == len(every) and note["missed"] == [list(w) for w in every]
    again = Memory(tmp_path / "m", *load(str(tiny_model_dir)), tiny_cfg(method="neurons"), "tiny")
    assert again.records[fid]["wordings"] == note             # replayed from the journal
    console = Console(record=True, width=200)
    show_facts(tmp_path / "m", again.records, console)
    assert f"0/{len(every)}" in console.export_text()
