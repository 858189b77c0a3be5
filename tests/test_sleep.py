"""Sleep's mechanics on a tiny random Llama: audit, refresh, prune, guard, checkpoint."""
import numpy as np
from mlx_lm import load

from sleepllm import memit, relations, sleep, store
from sleepllm.memory import Memory
from sleepllm.relations import Fact
from test_editor import _mlp_weights, tiny_cfg
from test_memory import down, same


def R(raw, chat):
    """A scripted audit result (the tiny model recalls nothing by itself)."""
    return {"raw": raw, "chat": chat, "texts": []}


def open_mem(model_dir, folder, **sleep_cfg):
    model, tok = load(str(model_dir))
    cfg = tiny_cfg()
    cfg["sleep"].update(sleep_cfg)
    return Memory(folder, model, tok, cfg, "tiny")


def test_sleep_consolidates_into_a_checkpoint(tiny_model_dir, tmp_path):
    mem = open_mem(tiny_model_dir, tmp_path / "m", rounds=1, max_ppl_drift=10.0,
                   max_general_changed=1.0)
    mem.learn(Fact("user", "name", "Rex", "dog"))
    mem.learn(Fact("Aria", "lives_in", "Ghent"))
    report = sleep.run(mem)
    assert report["checkpoint"] == mem.checkpoint_name == "ckpt-1"
    assert sum(report["counts"].values()) == 2
    assert set(report["phases"]) >= {"prune", "consolidate", "audit", "refresh", "guard_after",
                                     "checkpoint"}
    assert report["consolidated"] == list(mem.records)   # one joint solve replaced the wake edits
    assert all(e.z is not None for e in mem.editor.edits.values())   # targets kept for next sleep
    assert store.journal_read(mem.journal) == []
    assert all(r["status"] == "consolidated" and r["last_audit"] for r in mem.records.values())
    w = down(mem)
    again = open_mem(tiny_model_dir, tmp_path / "m")
    assert list(again.records) == list(mem.records) and same(down(again), w)
    assert all(e.z is not None for e in again.editor.edits.values())


def test_guard_rolls_back_when_drift_exceeds_the_bound(tiny_model_dir, tmp_path):
    mem = open_mem(tiny_model_dir, tmp_path / "m", rounds=1, max_ppl_drift=-1.0)
    mem.learn(Fact("user", "name", "Rex", "dog"))
    w = down(mem)
    report = sleep.run(mem)
    assert report["rolled_back"] and "perplexity drift" in report["rolled_back"]
    assert same(down(mem), w)          # the weights are those from before sleep
    assert mem.checkpoint_name         # and they are still consolidated


def test_prune_merges_duplicates_and_resolves_conflicts(tiny_model_dir, tmp_path):
    mem = open_mem(tiny_model_dir, tmp_path / "m", rounds=0, max_ppl_drift=10.0,
                   max_general_changed=1.0)
    a, _ = mem.learn(Fact("user", "name", "Rex", "dog"))
    # a conflicting record that slipped in (e.g. an old journal): same key, other object
    b = "m0099"
    edit = mem.editor.write(Fact("user", "name", "Max", "dog"), b)
    mem.records[b] = dict(mem.records[a], id=b, fact=edit.fact.to_dict())
    report = sleep.run(mem)
    assert [p["id"] for p in report["pruned"]] == [a]
    assert list(mem.records) == [b]


def test_consolidation_that_recalls_less_is_undone(tiny_model_dir, tmp_path, monkeypatch):
    """Sleep keeps the joint solve only if the audit after it scores at least as high as the
    audit of the wake edits. The tiny model recalls nothing either way, so the audit is told
    that the wake edits recalled everything and the joint solve nothing: the wake edits must
    come back exactly."""
    from sleepllm import probes

    mem = open_mem(tiny_model_dir, tmp_path / "m", rounds=0, max_ppl_drift=10.0,
                   max_general_changed=1.0)
    mem.learn(Fact("user", "name", "Rex", "dog"))
    mem.learn(Fact("Aria", "lives_in", "Ghent"))
    w = down(mem)
    calls = []

    def audit(model, tok, facts, system=None, **_):
        calls.append(1)
        ok = len(calls) == 1      # first call: the wake edits
        return {i: R(ok, float(ok)) for i in facts}

    monkeypatch.setattr(probes, "audit", audit)
    report = sleep.run(mem)
    assert report["consolidation"] == {"wake_score": 4.0, "joint_score": 0.0, "kept": False}
    assert report["consolidated"] == []
    assert same(down(mem), w)           # exactly the wake edits' weights
    again = open_mem(tiny_model_dir, tmp_path / "m")
    assert same(down(again), w)         # and that is what the checkpoint holds


def test_refresh_round_that_lowers_total_recall_is_undone(tiny_model_dir, tmp_path, monkeypatch):
    """A refresh round is judged on a full audit: when the rewrite of a lost memory costs
    another memory more than it gains, the round is undone and the weights are exactly those
    before it. (The audit is scripted: the tiny model recalls nothing by itself.)"""
    from sleepllm import probes

    mem = open_mem(tiny_model_dir, tmp_path / "m", rounds=1, seconds=600,
                   max_ppl_drift=10.0, max_general_changed=1.0)
    a = mem.learn(Fact("user", "name", "Rex", "dog"))[0]
    b = mem.learn(Fact("Aria", "lives_in", "Ghent"))[0]
    calls, before_refresh = [], []

    def audit(model, tok, facts, system=None, **_):
        if len(facts) == 1:                        # the rewrite's own check: b recalls more
            return {b: R(False, 0.5)}
        calls.append(1)
        if len(calls) == 2:                        # right after the joint solve
            before_refresh.append(down(mem))
        if len(calls) <= 2:                        # wake edits, joint solve: a healthy, b lost
            return {a: R(True, 1.0), b: R(False, 0.0)}
        return {a: R(False, 0.0), b: R(False, 0.5)}   # worse

    monkeypatch.setattr(probes, "audit", audit)
    report = sleep.run(mem)
    assert len(calls) == 3 and report["refreshed"] == []
    assert report["refresh_rounds"] == [{"rewritten": 1, "before": 2.0, "after": 0.5,
                                         "undone": True}]
    assert same(down(mem), before_refresh[0])
    assert report["audit_after"] == {a: "healthy", b: "lost"}


def test_a_rewrite_that_does_not_recall_more_of_its_memory_is_put_back(tiny_model_dir, tmp_path,
                                                                      monkeypatch):
    """Each rewrite is checked on its own memory's probes at once: one that recalls no more
    than the edit it replaced is reverted and the old edit restored (exact weights), so the
    round has nothing to judge and the audit is not run again."""
    from sleepllm import probes

    mem = open_mem(tiny_model_dir, tmp_path / "m", rounds=2, seconds=600,
                   max_ppl_drift=10.0, max_general_changed=1.0, joint_max_memories=0)
    a = mem.learn(Fact("user", "name", "Rex", "dog"))[0]
    b = mem.learn(Fact("Aria", "lives_in", "Ghent"))[0]
    full = {a: R(True, 1.0), b: R(True, 0.5)}
    calls = []

    def audit(model, tok, facts, system=None, **_):
        calls.append(sorted(facts))
        return {i: full[i] for i in facts}         # the rewrite recalls b as before: no gain

    monkeypatch.setattr(probes, "audit", audit)
    w = down(mem)
    report = sleep.run(mem)
    assert calls == [[a, b], [b]]
    assert report["refreshed"] == [] and "refresh_rounds" not in report
    assert same(down(mem), w)
    assert report["audit_after"] == {a: "healthy", b: "degraded"}


def test_refresh_protects_every_anchor_position_of_a_healthy_memorys_probes(tiny_model_dir,
                                                                            tmp_path):
    """The keys sleep's refresh holds: one row per anchor position of the bare cue and the
    first two chat questions (their answers included), read from the current weights."""
    from sleepllm import editor, probes

    mem = open_mem(tiny_model_dir, tmp_path / "m")
    ed = mem.editor
    fact = Fact("user", "name", "Rex", "dog")
    prompts = editor.render(fact, ed.tokenizer, ed.prefixes, ed.system_prompt, ed.hp.questions)[0]
    probed = [prompts[0]] + prompts[1 + len(ed.prefixes):][:probes.AUDIT_QUESTIONS]
    keys = ed.probe_keys([fact])
    n = sum(len(p.keys) for p in probed)
    assert n >= 5 and all(k.shape == (n, ed.base[l].shape[1]) for l, k in keys.items())
    # the rows are the probes' own texts: the bare cue is the audit's raw probe
    raw = probes.fact_probes(fact, ed.tokenizer)[0][1]
    assert prompts[0].ids[: len(raw)] == raw
    one = memit.read(ed.model, [memit.Prompt(raw, 0, [(0, prompts[0].keys[0][1])])], 1,
                     key_layers=ed.hp.layers)[0]
    for l in ed.hp.layers:
        np.testing.assert_allclose(keys[l][0], one[l][0], rtol=1e-5, atol=1e-6)


def test_joint_solve_is_not_tried_above_joint_max_memories(tiny_model_dir, tmp_path):
    mem = open_mem(tiny_model_dir, tmp_path / "m", rounds=0, max_ppl_drift=10.0,
                   max_general_changed=1.0, joint_max_memories=1)
    mem.learn(Fact("user", "name", "Rex", "dog"))
    mem.learn(Fact("Aria", "lives_in", "Ghent"))
    w = down(mem)
    report = sleep.run(mem)
    assert report["consolidated"] == []
    assert "2 memories > joint_max_memories 1" in report["consolidation"]["skipped"]
    assert same(down(mem), w)            # the wake edits, untouched
    assert mem.checkpoint_name == "ckpt-1"


def test_what_does_not_fit_in_the_time_budget_is_skipped_and_reported(tiny_model_dir, tmp_path,
                                                                      monkeypatch):
    """With no time left after the audit, sleep neither solves jointly nor rewrites the weak
    memory; it says so, keeps the wake edits exactly, and still writes the checkpoint."""
    from sleepllm import probes

    mem = open_mem(tiny_model_dir, tmp_path / "m", rounds=2, seconds=0, max_ppl_drift=10.0,
                   max_general_changed=1.0)
    a = mem.learn(Fact("user", "name", "Rex", "dog"))[0]
    b = mem.learn(Fact("Aria", "lives_in", "Ghent"))[0]
    monkeypatch.setattr(probes, "audit", lambda model, tok, facts, system=None, **_: {
        a: R(True, 1.0), b: R(False, 0.0)})
    w = down(mem)
    report = sleep.run(mem)
    assert report["consolidated"] == [] and "budget" in report["consolidation"]["skipped"]
    assert report["skipped_for_time"] == ["consolidate", "refresh of 1 weak memories"]
    assert report["refreshed"] == [] and report["unrestored"] == [b]
    assert same(down(mem), w)
    assert mem.checkpoint_name == "ckpt-1"


def test_the_ledger_keeps_what_the_probes_answered_and_the_next_audit_checks_it(tiny_model_dir,
                                                                               tmp_path):
    """Each memory's audited outputs are kept in the ledger; the next sleep's first audit
    passes them as drafts, so the probes the trained answers missed (all of them, on the
    tiny model) are settled by the one teacher-forced pass instead of being generated."""
    mem = open_mem(tiny_model_dir, tmp_path / "m", rounds=0, max_ppl_drift=10.0,
                   max_general_changed=1.0, joint_max_memories=0)
    a = mem.learn(Fact("user", "name", "Rex", "dog"))[0]
    b = mem.learn(Fact("Aria", "lives_in", "Ghent"))[0]
    first = sleep.run(mem)
    assert first["audit_generated"] == 6
    again = open_mem(tiny_model_dir, tmp_path / "m", rounds=0, max_ppl_drift=10.0,
                     max_general_changed=1.0, joint_max_memories=0)
    texts = {i: again.records[i]["last_audit"]["texts"] for i in (a, b)}
    assert all(len(t) == 3 and all(isinstance(x, str) for x in t) for t in texts.values())
    second = sleep.run(again)
    assert second["audit_generated"] < first["audit_generated"]
    assert second["audit_before"] == first["audit_after"]


def test_settled_gates_are_kept_only_if_recall_holds_and_reach_the_checkpoint(tiny_model_dir,
                                                                              tmp_path,
                                                                              monkeypatch):
    """Memory neurons, with sleep.settle_gates (off by default: then it is not tried): sleep's
    consolidation is Editor.settle (new gates for some units), judged
    like the MEMIT joint solve — an audit after it that scores lower puts the old units back
    exactly; one that scores as high keeps the new gates, and the checkpoint holds them (a new
    process loads the same units bit for bit). The tiny model's units open on no other memory's
    anchors, so the settling is scripted here: a unit's gate moved a little; the audit too."""
    import dataclasses

    from sleepllm import probes
    from sleepllm.editor import Editor

    units = lambda mem: _mlp_weights(mem.editor.model, mem.editor.neuron_layer)

    def settle(ed):
        L = ed.neuron_layer
        e = next(iter(ed.edits.values()))
        g, u, d = e.factors[L]
        ed.edits[e.id] = dataclasses.replace(e, factors={L: ((g * 1.5).astype(np.float16), u, d)})
        ed._refresh(L)
        return [e.id]

    monkeypatch.setattr(Editor, "settle", settle)
    for lower, on in ((True, True), (False, True), (False, False)):
        folder = tmp_path / f"m{lower}{on}"
        model, tok = load(str(tiny_model_dir))
        cfg = tiny_cfg(method="neurons")
        cfg["sleep"].update(rounds=0, max_ppl_drift=10.0, max_general_changed=1.0,
                            settle_gates=on, rehearse_steps=0)
        mem = Memory(folder, model, tok, cfg, "tiny")
        first, _ = mem.learn(Fact("user", "name", "Rex", "dog"))
        mem.learn(Fact("Aria", "lives_in", "Ghent"))
        w = units(mem)
        calls = []

        def audit(model, tok, facts, system=None, **_):
            calls.append(1)
            ok = len(calls) == 1 or not lower
            return {i: R(ok, float(ok)) for i in facts}

        monkeypatch.setattr(probes, "audit", audit)
        report = sleep.run(mem)
        after = units(mem)
        if not on:              # the default: not tried
            assert "settle_gates is off" in report["consolidation"]["skipped"]
            assert report["consolidated"] == [] and len(calls) == 1
            assert all(np.array_equal(x, y) for x, y in zip(after, w))
            continue
        assert report["consolidation"]["kept"] is not lower
        if lower:
            assert report["consolidated"] == []
            assert all(np.array_equal(x, y) for x, y in zip(after, w))
        else:
            assert report["consolidated"] == [first]
            np.testing.assert_array_equal(
                after[0][-2], (w[0][-2].astype(np.float16) * np.float16(1.5)).astype(np.float32))
        monkeypatch.undo()
        monkeypatch.setattr(Editor, "settle", settle)
        if on and not lower:    # a settling that leaves no time for its audit is undone
            model, tok = load(str(tiny_model_dir))
            slow = Memory(tmp_path / "slow", model, tok, cfg, "tiny")
            slow.learn(Fact("user", "name", "Rex", "dog"))
            slow.learn(Fact("Aria", "lives_in", "Ghent"))
            w_slow = units(slow)
            monkeypatch.setattr(probes, "audit", audit)
            now = [0.0]                                  # a clock: 1 ms a reading, and the
            tick = lambda: now.__setitem__(0, now[0] + 1e-3) or now[0]   # settling takes 100 s
            monkeypatch.setattr(sleep.time, "perf_counter", tick)
            monkeypatch.setattr(Editor, "settle",
                                lambda ed: now.__setitem__(0, now[0] + 100) or settle(ed))
            slow.cfg["sleep"]["seconds"] = 60
            report = sleep.run(slow)
            assert report["consolidated"] == [] and "consolidate" in report["skipped_for_time"]
            assert "no longer fits" in report["consolidation"]["skipped"]
            assert all(np.array_equal(x, y) for x, y in zip(units(slow), w_slow))
            monkeypatch.undo()
            monkeypatch.setattr(Editor, "settle", settle)
        again, tok = load(str(tiny_model_dir))
        back = Memory(folder, again, tok, cfg, "tiny")
        assert all(np.array_equal(x, y) for x, y in zip(units(back), after))


def test_rehearsal_keeps_a_value_only_if_it_answers_more_and_the_checkpoint_holds_it(
        tiny_model_dir, tmp_path, monkeypatch):
    """Sleep's rehearsal (memory neurons): each memory is asked all its wordings; one that
    misses some has its value column searched again (Editor.rehearse, real) and keeps it only
    if it then answers more of them and loses none it answered — else the weights are put
    back bit for bit. The ledger says when and how many; a new process loads the rehearsed
    unit. The tiny model answers nothing by itself, so the wordings' answers are scripted:
    missed before → after, by index among the memory's wordings."""
    from sleepllm import probes

    units = lambda mem: _mlp_weights(mem.editor.model, mem.editor.neuron_layer)
    modes = {"better": ({0}, set()), "worse": ({0}, {0}), "trade": ({0, 1}, {2})}
    for mode, (missed_before, missed_after) in modes.items():
        better = mode == "better"
        folder = tmp_path / mode
        model, tok = load(str(tiny_model_dir))
        cfg = tiny_cfg(method="neurons")
        cfg["sleep"].update(rounds=0, max_ppl_drift=10.0, max_general_changed=1.0,
                            rehearse_steps=2)
        mem = Memory(folder, model, tok, cfg, "tiny")
        first, _ = mem.learn(Fact("user", "name", "Rex", "dog"))
        second, _ = mem.learn(Fact("Aria", "lives_in", "Ghent"))
        n = len(relations.every_wording(Fact("user", "name", "Rex", "dog")))
        # each write asked its memory every wording (really: the tiny model answers none)
        noted = mem.records[first]["wordings"]
        assert noted["of"] == n and noted["missed"] == [
            list(x) for x in relations.every_wording(Fact("user", "name", "Rex", "dog"))]
        assert len(mem.records[second]["wordings"]["missed"]) == 4 < n
        w = units(mem)
        asked = []

        def wordings(model, tok, facts, system=None):
            out = {}
            for fid, fact in facts.items():
                asked.append(fid)
                missed = set() if fid != first else \
                    missed_after if asked.count(fid) > 1 else missed_before
                out[fid] = [(t, a, k not in missed, "")
                            for k, (t, a) in enumerate(relations.every_wording(fact))]
            return out

        monkeypatch.setattr(probes, "audit", lambda m, t, facts, s=None, **_: {
            i: R(True, 1.0) for i in facts})
        monkeypatch.setattr(probes, "wordings", wordings)
        report = sleep.run(mem)
        monkeypatch.undo()
        # the most missed first, each alone; the first asked again after its rehearsal
        assert asked == [first, first, second]
        entry, other = report["rehearsed"]
        before = n - len(missed_before)
        assert (entry["id"], entry["of"], entry["before"]) == (first, n, before)
        assert entry["kept"] is better and entry["after"] == (n if better else before)
        assert {k: other[k] for k in ("id", "of", "before", "after", "kept")} == \
            {"id": second, "of": 4, "before": 4, "after": 4, "kept": False}
        said = mem.records[first]["history"][-1]
        assert said["event"] == "rehearsed" and said["wordings"] == [before, entry["after"], n]
        # the ledger notes what each still misses, asked and rehearsed at one time
        still = mem.records[first]["wordings"]
        assert still["missed"] == [list(x) for k, x in enumerate(relations.every_wording(
            Fact("user", "name", "Rex", "dog"))) if k in (set() if better else missed_before)]
        assert still["time"] == mem.records[first]["rehearsed"]
        assert mem.records[second]["wordings"]["missed"] == []
        after = units(mem)
        for i in (0, 1):                              # gates and up vectors never move
            np.testing.assert_array_equal(after[i], w[i])
        if not better:
            np.testing.assert_array_equal(after[2], w[2])
            continue
        assert not np.array_equal(after[2][:, -2], w[2][:, -2])     # the first unit's value
        np.testing.assert_array_equal(after[2][:, -1], w[2][:, -1])  # the other's: as it was
        model, tok = load(str(tiny_model_dir))
        again = Memory(folder, model, tok, cfg, "tiny")
        for x, y in zip(units(again), after):
            np.testing.assert_array_equal(x, y)
        assert again.records[first]["rehearsed"]


def test_rehearsal_goes_first_to_the_memories_that_missed_wordings_since_last_rehearsed():
    """The ledger's note of the wordings each memory missed orders the rehearsal: missed and
    not rehearsed since (most missed first), then never asked (learning order), then the rest
    by how long since rehearsed — so a sleep's time goes where misses are known."""
    from types import SimpleNamespace

    def rec(missed=None, asked="2026-12-01T10:00:00+00:00", rehearsed=None):
        r = {} if missed is None else {"wordings": {"time": asked, "of": 9,
                                                     "missed": [["w", None]] * missed}}
        return {**r, **({"rehearsed": rehearsed} if rehearsed else {})}

    records = {
        "m1": rec(0),                                             # answered all at its write
        "m2": rec(),                                              # never asked
        "m3": rec(2),                                             # two missed, never rehearsed
        "m4": rec(1, asked="t2", rehearsed="t2"),                 # rehearsed, one still missed
        "m5": rec(5),                                             # five missed
        "m6": rec(),                                              # never asked
        "m7": rec(3, asked="t1", rehearsed="t0"),                 # missed since a rehearsal
    }
    memory = SimpleNamespace(records=records)
    assert sleep._rehearsal_order(memory, list(records)) == \
        ["m5", "m7", "m3", "m2", "m6", "m1", "m4"]
