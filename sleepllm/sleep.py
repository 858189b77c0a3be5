"""Sleep: prune → audit → consolidate → refresh → rehearse → guard → checkpoint.

0. prune    duplicates (same key, same object) merged; conflicts (same key, other object)
            resolved in favour of the newer statement. Superseded and forgotten facts were
            already reverted at wake.
1. audit    every memory probed by free generation (its cue and chat questions):
            healthy (all answered) / degraded (some) / lost (none).
2. consolidate  memory neurons, with `sleep.settle_gates` (off by default: at 100 facts it
            recalled less, docs/editing.md, thirty-eighth round): a unit's gate was trained
            closed on the memories written before it, not on later ones; each gate that opens
            on a later memory's anchors is shut there, unchanged at its own (Editor.settle,
            neurons.shut). MEMIT edits:
            the wake edits, written one at a time, interfere: every memory's edit is
            replaced by one batch MEMIT solve over all memories at once, from the target
            values found when each was learned (memit.consolidate; no v* optimisation).
            Either way the memories are audited again and the change is kept only when it
            recalls at least as much as the wake edits did; otherwise they are put back.
            Above `sleep.joint_max_memories` it is not tried: measured, it recalled more
            than the wake edits at 20 and 50 memories and less at 99, twice
            (docs/benchmarks.md), and solving and auditing it costs minutes there.
3. refresh  each degraded or lost memory is rewritten: its edit reverted, v* recomputed on
            the current weights; a memory neuron's gate is trained closed on every other
            memory's anchor inputs (neurons.py), a MEMIT update solved so that the keys at
            every anchor position of every healthy memory's audit probes (Editor.probe_keys; and, with
            `nullspace` > 0, ordinary text's principal key directions) are *exactly* untouched
            (memit.solve's null-space constraint). A rewrite is kept only if its own memory's
            probes then recall more than with the edit it replaced; otherwise that edit is put
            back at once. After each round every memory is audited again; a round that lowers
            the total recall is undone (a healthy memory's other positions can still move).
            Audit and refresh repeat until nothing improves, `sleep.rounds` is reached or the
            budget is spent; what cannot be restored is reported, never silently dropped.
   budget   `sleep.seconds` bounds the whole sleep: the joint solve and each rewrite start
            only when they, the audit that judges them and the guard still fit in what is
            left (a gate settling that leaves too little for them is undone); what was
            skipped for time is reported. Every audit after the first passes
            each probe's last output as its draft (probes.audit), so it costs about the first
            audit's teacher-forced pass, not its token-by-token generation of the misses.
3b. rehearse  (memory neurons) a unit answers the wordings its v* search trained; the others
            (relations.every_wording: the family's other cues, the further wordings, the
            noun's synonyms) it answers as far as its δ carries. A write asks the new memory
            all of them once and the ledger notes the ones it missed (Memory._write). Each
            memory in turn — those with wordings missed and not rehearsed since first (the
            most missed first), then those never asked, then the longest since rehearsed — is
            asked all of them by free generation; one that misses some has its δ searched
            again (Editor.rehearse: `rehearse_steps` warm Adam steps) on its own prompts and
            all its wordings, missed and answered, the other memories' prompts its gate opens
            on held to their own answers; kept if it then answers more of its wordings, loses
            none it answered and no audit probe; the phase is judged on every memory like a
            refresh round. As many as fit in the budget; the rest wait for the next sleep
            (reported), and the ledger's note is updated.
4. guard    perplexity on held-out text before/after, and the share of general questions
            answered unlike the unedited model before/after; when perplexity rises or that
            share grows past the configured bounds, everything sleep changed is rolled back,
            with the reason.
5. store    a new checkpoint (atomic; manifest last), the journal retired.
"""
import time

from sleepllm import probes, relations
from sleepllm.memory import _now, wordings_record
from sleepllm.relations import Fact


def _general(model, tokenizer, system, drafts=None):
    """The general questions' answers; `drafts`: answers given before (one teacher-forced pass
    checks them, probes.generate), the output is the greedy one either way."""
    ids = [probes.chat_ids(tokenizer, q, system) for q in probes.general_questions()]
    if drafts is not None:
        drafts = [tokenizer.encode(d, add_special_tokens=False) if d else None for d in drafts]
    return probes.generate(model, tokenizer, ids, max_tokens=12, drafts=drafts)


def _general_base(editor, system, fingerprint):
    """The general answers of the unedited model (edited layers set to W₀ for the call),
    cached per model fingerprint and system prompt: they never change."""
    import hashlib
    import json

    from sleepllm.config import cache_dir, private_dir
    from sleepllm.store import atomic_write_json

    key = hashlib.sha256(json.dumps([system, probes.general_questions()]).encode()).hexdigest()
    path = private_dir(cache_dir() / fingerprint) / f"general_{key[:16]}.json"
    if path.exists():
        return json.loads(path.read_text())
    answers = _general_unedited(editor, system)
    atomic_write_json(path, answers)
    return answers


def _general_unedited(editor, system):
    with editor.unedited():
        return _general(editor.model, editor.tokenizer, system)


def run(memory, progress=None) -> dict:
    """Consolidate a Memory. `progress(phase, done, total)` for a display. Returns the report."""
    ed, cfg = memory.editor, memory.cfg
    model, tok, system = ed.model, ed.tokenizer, cfg["system_prompt"]
    report = {"phases": {}, "pruned": [], "refreshed": [], "unrestored": [], "rolled_back": None,
              "skipped_for_time": []}
    say = progress or (lambda *a: None)
    start = t = time.perf_counter()
    left = lambda: cfg["sleep"]["seconds"] - (time.perf_counter() - start)

    # -- prune first: nothing to refresh in a duplicate
    seen = {}
    for fid in list(memory.records):
        fact = Fact.from_dict(memory.records[fid]["fact"])
        if fact.key() in seen:
            older = seen[fact.key()]
            same = Fact.from_dict(memory.records[older]["fact"]).object.lower() == fact.object.lower()
            drop = fid if same else older           # duplicate: keep the first; conflict: newer
            memory.editor.revert(drop)
            rec = memory.records.pop(drop)
            report["pruned"].append({"id": drop, "text": rec["text"],
                                     "why": "duplicate" if same else "conflict (newer wins)"})
            if drop == older:
                seen[fact.key()] = fid
        else:
            seen[fact.key()] = fid
    report["phases"]["prune"] = time.perf_counter() - t

    # -- guard baseline
    t = time.perf_counter()
    say("guard", 0, 1)
    gen_base = _general_base(ed, system, memory.fingerprint)   # cached after the first sleep
    t_guard = time.perf_counter()
    ppl0 = probes.perplexity(model, tok)
    gen0 = _general(model, tok, system)   # (the base answers as drafts: 13 of 20 differ, slower)
    guard_cost = time.perf_counter() - t_guard      # what the guard after will cost
    before = {fid: e for fid, e in ed.edits.items()}
    report["phases"]["guard_before"] = time.perf_counter() - t

    # -- audit the wake edits, consolidate, audit again: keep whichever recalls more
    t = time.perf_counter()
    facts = memory.active()
    say("audit", 0, len(facts))
    first = {}
    # what each memory's probes answered at the last sleep: the drafts of the ones it missed
    last = {i: memory.records[i]["last_audit"] for i in facts
            if (memory.records[i].get("last_audit") or {}).get("texts")}
    audit = probes.audit(model, tok, facts, system, previous=last, stats=first)
    report["audit_before"] = {i: probes.status(r) for i, r in audit.items()}
    report["phases"]["audit"] = audit_cost = time.perf_counter() - t
    report["audit_generated"] = first.get("generated")   # probes the draft check left open
    # every later audit passes each probe's last output as its draft: after a small change
    # nearly all are settled by one teacher-forced pass, which the first audit timed
    reaudit_cost = min(audit_cost, 1.25 * first.get("verify_seconds", audit_cost))
    # a joint solve costs about half an audit (docs/benchmarks.md); then an audit judges it
    t = time.perf_counter()
    say("consolidate", 0, 1)
    report["consolidated"] = []
    joint_fits = 0.5 * audit_cost + reaudit_cost + guard_cost <= left()
    if ed.neurons and not cfg["sleep"]["settle_gates"]:
        report["consolidation"] = {"skipped": "memory neurons: sleep.settle_gates is off"}
    elif ed.neurons and reaudit_cost + guard_cost <= left():
        report["consolidated"] = ed.settle()
        if not report["consolidated"]:
            report["consolidation"] = {"skipped": "no memory neuron's gate opens on another "
                                                  "memory's anchors"}
        elif reaudit_cost + guard_cost > left():   # the settling's own time, counted
            _restore(ed, before)
            report["consolidated"] = []
            report["consolidation"] = {"skipped": "the audit after settling the gates no "
                                                  "longer fits in the "
                                                  f"{cfg['sleep']['seconds']} s budget"}
            report["skipped_for_time"].append("consolidate")
    elif ed.neurons:
        report["consolidation"] = {"skipped": "the audit after settling the gates does not fit "
                                              f"in the {cfg['sleep']['seconds']} s budget"}
        report["skipped_for_time"].append("consolidate")
    elif len(facts) <= cfg["sleep"]["joint_max_memories"] and joint_fits:
        report["consolidated"] = ed.consolidate()
    elif len(facts) <= cfg["sleep"]["joint_max_memories"]:
        report["consolidation"] = {"skipped": f"joint solve and its audit "
                                              f"(~{0.5 * audit_cost + reaudit_cost:.0f} s) do not "
                                              f"fit in the {cfg['sleep']['seconds']} s budget"}
        report["skipped_for_time"].append("consolidate")
    else:
        report["consolidation"] = {"skipped": f"{len(facts)} memories > joint_max_memories "
                                              f"{cfg['sleep']['joint_max_memories']}"}
    if report["consolidated"]:   # judged as a whole: kept if it recalls no less
        joint = probes.audit(model, tok, facts, system, previous=audit)
        wake_score, joint_score = _total(audit), _total(joint)
        report["consolidation"] = {"wake_score": wake_score, "joint_score": joint_score,
                                   "kept": joint_score >= wake_score}
        if joint_score >= wake_score:
            audit = joint
        else:   # the joint solve recalls less than the wake edits did: put them back
            _restore(ed, before)
            report["consolidated"] = []
    report["phases"]["consolidate"] = time.perf_counter() - t
    t = time.perf_counter()
    # a rewrite is as long as a wake write (the 90th percentile of the stored ones — at the
    # median, one slow rewrite took the sleep of 146 memories to 73 s —, then the slowest
    # rewrite of this sleep); it starts only if the round's audit and the guard still fit
    spent = sorted(_write_seconds(memory))
    rewrite_cost = spent[int(0.9 * (len(spent) - 1))] if spent else 0.0
    fits = lambda: rewrite_cost + reaudit_cost + guard_cost <= left()
    for _ in range(cfg["sleep"]["rounds"]):
        weak = [i for i, r in audit.items() if probes.status(r) != "healthy"]
        if not weak:
            break
        if not fits():
            _skip_refresh(report, len(weak))
            break
        healthy = [i for i in audit if i not in weak]
        # the weakest first: lost, then degraded, each in learning order
        weak.sort(key=lambda i: _score(audit[i]))
        protect = None   # read with the first rewrite, its time counted with it
        prior = {}       # the edit each rewrite replaced
        drafts = dict(audit)   # each probe's last output: the round's audit checks these
        for k, fid in enumerate(weak):
            if not fits():
                _skip_refresh(report, len(weak) - k)
                break
            say("refresh", k, len(weak))
            t_rewrite = time.perf_counter()
            if protect is None and not ed.neurons:   # a unit's gate is trained closed on
                protect = ed.probe_keys([facts[h] for h in healthy])   # the other memories
            fact = facts[fid]
            old = prior[fid] = ed.revert(fid)
            companions = relations.companions(fact, [f for i, f in facts.items() if i != fid])
            try:
                ed.write(fact, fid, companions, protect=protect)
            except (ValueError, FloatingPointError):
                ed.add(old)
                del prior[fid]
            else:   # kept only if it recalls more of this memory than the edit it replaced
                mine = probes.audit(model, tok, {fid: fact}, system)[fid]
                if _score(mine) <= _score(audit[fid]):
                    ed.revert(fid)
                    ed.add(old)
                    del prior[fid]
                else:
                    drafts[fid] = mine
            rewrite_cost = max(rewrite_cost, time.perf_counter() - t_rewrite)
        if not prior:
            break
        # judge the round on every memory: a rewrite protects the healthy memories' keys, but
        # their other prompts can still move; the round is kept only if the total recall does
        # not fall, else every rewrite of the round is undone
        t_audit = time.perf_counter()
        new_audit = probes.audit(model, tok, facts, system, previous=drafts)
        reaudit_cost = max(reaudit_cost, time.perf_counter() - t_audit)
        score_before, score_after = _total(audit), _total(new_audit)
        undone = score_after < score_before
        report.setdefault("refresh_rounds", []).append(
            {"rewritten": len(prior), "before": score_before, "after": score_after,
             "undone": undone})
        if undone:
            ed.revert_all(list(prior))
            ed.add(*prior.values())
            break
        improved = score_after > score_before
        report["refreshed"] += [i for i in prior if i not in report["refreshed"]]
        audit = new_audit
        if not improved:
            break
    report["phases"]["refresh"] = time.perf_counter() - t

    t = time.perf_counter()
    if ed.neurons and cfg["sleep"]["rehearse_steps"] > 0:
        audit = _rehearse(memory, audit, report, left, reaudit_cost + guard_cost,
                          rewrite_cost, say)
    report["phases"]["rehearse"] = time.perf_counter() - t
    report["audit_after"] = {i: probes.status(r) for i, r in audit.items()}
    report["unrestored"] = [i for i, s in report["audit_after"].items() if s == "lost"]

    # -- guard
    t = time.perf_counter()
    ppl1 = probes.perplexity(model, tok)
    gen1 = _general(model, tok, system, gen0)
    # general answers that differ from the unedited model's: how many more than before sleep
    off0 = sum(a != b for a, b in zip(gen0, gen_base)) / max(1, len(gen0))
    off1 = sum(a != b for a, b in zip(gen1, gen_base)) / max(1, len(gen1))
    changed = off1 - off0
    drift = ppl1 / ppl0 - 1
    report.update({"ppl_before": ppl0, "ppl_after": ppl1, "ppl_drift": drift,
                   "general_off_base_before": off0, "general_off_base_after": off1,
                   "general_changed": changed})
    bound = cfg["sleep"]["max_ppl_drift"]
    if drift > bound or changed > cfg["sleep"]["max_general_changed"]:
        _restore(ed, before)
        report["rolled_back"] = (f"perplexity drift {drift:+.1%} (bound {bound:.0%}) / general "
                                 f"answers unlike the base model's {off0:.0%} → {off1:.0%}: "
                                 f"sleep's changes undone")
        audit = probes.audit(model, tok, memory.active(), system, previous=audit)
        report["audit_after"] = {i: probes.status(r) for i, r in audit.items()}
    report["phases"]["guard_after"] = time.perf_counter() - t

    # -- ledger + checkpoint
    t = time.perf_counter()
    now = _now()
    for fid, r in audit.items():
        rec = memory.records[fid]
        st = probes.status(r)
        rec["last_audit"] = {"time": now, "status": st, "raw": r["raw"], "chat": r["chat"],
                             "texts": r["texts"]}
        rec["history"].append({"time": now, "event": "audit", "status": st})
        if fid in report["refreshed"] and not report["rolled_back"]:
            rec["history"].append({"time": now, "event": "refreshed"})
    for entry in report.get("rehearsed", []):
        if report["rolled_back"] and entry["kept"]:
            _undo(entry)
        rec = memory.records[entry["id"]]
        rec["history"].append({"time": now, "event": "rehearsed",
                               "wordings": [entry["before"], entry["after"], entry["of"]]})
        # asked and rehearsed at one time: a memory still missing some waits its turn
        rec["rehearsed"] = now
        rec["wordings"] = wordings_record(entry["of"], entry["missed"]["after"], now)
    report["checkpoint"] = memory.checkpoint()
    report["phases"]["checkpoint"] = time.perf_counter() - t
    report["counts"] = {s: sum(v == s for v in report["audit_after"].values())
                        for s in ("healthy", "degraded", "lost")}
    return report


def _write_seconds(memory) -> list[float]:
    """How long each active memory's write took: the ledger's (an edit loaded from a
    checkpoint does not carry it), else the edit's own."""
    out = []
    for fid, rec in memory.records.items():
        told = [h["edit_seconds"] for h in rec["history"] if h.get("edit_seconds")]
        edit = memory.editor.edits.get(fid)
        out += told[-1:] or ([edit.seconds] if edit is not None and edit.seconds else [])
    return out


REHEARSE_ASK = 4   # memories whose wordings one generation call asks at once


def _rehearsal_order(memory, facts) -> list[str]:
    """Whom sleep rehearses first: the memories that missed wordings when last asked (at
    their write, or a sleep's rehearsal) and were not rehearsed since — the most missed
    first; then the ones never asked (a ledger from before wordings were noted), in learning
    order; then the rest, the longest since rehearsed first."""
    def key(i):
        rec = memory.records[i]
        noted, last = rec.get("wordings"), rec.get("rehearsed") or ""
        if noted and noted["missed"] and last < noted["time"]:
            return 0, -len(noted["missed"]), ""
        if noted is None and not last:
            return 1, 0, ""
        return 2, 0, last
    return sorted(facts, key=key)


def _rehearse(memory, audit, report, left, after_cost, write_cost, say):
    """Memory neurons practise the wordings they do not answer (module docstring, step 3b).
    Returns the audit of every memory after it (the one given if nothing was kept)."""
    ed, cfg, system = memory.editor, memory.cfg, memory.cfg["system_prompt"]
    model, tok = ed.model, ed.tokenizer
    facts = memory.active()
    order = _rehearsal_order(memory, facts)
    expected = lambda i: bool((memory.records[i].get("wordings") or {}).get("missed"))
    steps = cfg["sleep"]["rehearse_steps"]
    # a rehearsal is one warm v* search of `steps` steps (a wake write is two of up to
    # v_steps) and an ask of its wordings after it; then the slowest one seen
    cost = write_cost * steps / ed.hp.v_steps + 2.0
    ask_cost = 2.0
    prior = {}
    report["rehearsed"] = []
    done, out_of_time = 0, False
    while not out_of_time and done < len(order) and ask_cost + after_cost <= left():
        t = time.perf_counter()
        # one expected to miss is asked alone (its rehearsal follows), the others together
        batch = order[done: done + (1 if expected(order[done]) else REHEARSE_ASK)]
        asked = probes.wordings(model, tok, {i: facts[i] for i in batch}, system)
        ask_cost = max(ask_cost, time.perf_counter() - t)
        for fid in batch:
            missed = probes.missed(asked[fid])
            if missed and cost + after_cost > left():
                out_of_time = True
                break
            say("rehearse", done, len(order))
            t = time.perf_counter()
            entry = {"id": fid, "of": len(asked[fid]), "before": len(asked[fid]) - len(missed),
                     "after": len(asked[fid]) - len(missed), "kept": False,
                     "missed": {"before": missed, "after": missed}}
            if missed:
                answered = [(text, answer) for text, answer, ok, _ in asked[fid] if ok]
                try:
                    old = ed.rehearse(fid, missed, steps, answered)
                except (ValueError, FloatingPointError) as e:
                    entry["error"] = str(e)
                else:   # kept if it answers more of its wordings, loses none of them and
                    fact = {fid: facts[fid]}   # no audit probe
                    after = probes.wordings(model, tok, fact, system)[fid]
                    mine = probes.audit(model, tok, fact, system, previous=audit)[fid]
                    entry["after"] = sum(ok for _, _, ok, _ in after)
                    kept_all = all(ok for (_, _, ok, _), (_, _, was, _) in zip(after, asked[fid])
                                   if was)
                    if entry["after"] > entry["before"] and kept_all and \
                            _score(mine) >= _score(audit[fid]):
                        entry["kept"] = True
                        entry["missed"]["after"] = probes.missed(after)
                        prior[fid] = old
                    else:
                        ed.swap(old)
                        entry["after"] = entry["before"]
                    entry["seconds"] = round(time.perf_counter() - t, 1)
                    cost = max(cost, entry["seconds"])
            report["rehearsed"].append(entry)
            done += 1
    if done < len(order):
        report["skipped_for_time"].append(f"rehearsal of {len(order) - done} memories")
    if not prior:
        return audit
    # judged on every memory, as a refresh round is: a rehearsed δ is heard wherever its gate
    # opens a little; kept only if the total recall does not fall
    new = probes.audit(model, tok, facts, system, previous=audit)
    if _total(new) < _total(audit):
        for old in prior.values():
            ed.swap(old)
        for entry in report["rehearsed"]:
            if entry["kept"]:
                _undo(entry)
        return audit
    return new


def _undo(entry):
    """A rehearsal's report entry once its δ is put back."""
    entry.update(kept=False, after=entry["before"], undone=True)
    entry["missed"]["after"] = entry["missed"]["before"]


def _skip_refresh(report, n):
    """What the refresh left for lack of time: said once, as of the last round."""
    skipped = [s for s in report["skipped_for_time"] if not s.startswith("refresh of")]
    report["skipped_for_time"] = skipped + [f"refresh of {n} weak memories"]


def _restore(ed, edits: dict):
    """Put the weights back to exactly these edits (one refresh per layer each way)."""
    ed.revert_all(list(ed.edits))
    ed.add(*edits.values())


def _score(r):
    return int(r["raw"]) + r["chat"]


def _total(audit):
    return sum(_score(r) for r in audit.values())
