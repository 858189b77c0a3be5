"""Recall probes, shared by audit, eval and tests: free greedy generation, never teacher forcing.
(A draft of the expected answer may be checked in one pass, as speculative decoding does; what
is returned is still exactly the greedy output.)

- raw:  a completion cue ("My dog's name is") continued greedily;
- chat: a question through the model's chat template, answered greedily;
- hit:  the object appears in the output, case-insensitive, at word boundaries.
"""
import math
import re
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from sleepllm import relations
from sleepllm.memit import SHARED_MIN, PrefixCache, by_prefix, hidden_logits, shared
from sleepllm.relations import Fact

HELDOUT = Path(__file__).parent / "data" / "heldout.txt"
GENERAL = Path(__file__).parent / "data" / "general.txt"


def hit(obj: str, text: str) -> bool:
    """Object named in text (case-insensitive, word boundaries; a title like 'Dr.' optional)."""
    core = re.sub(r"^(?:dr|mr|mrs|ms|prof|madame|sir)\.?\s+", "", obj.strip(), flags=re.I)
    for o in {obj.strip(), core}:
        if o and re.search(r"(?<!\w)" + re.escape(o) + r"(?!\w)", text, re.I):
            return True
    return False


def raw_ids(tokenizer, cue: str):
    return tokenizer.encode(cue)


def chat_ids(tokenizer, question: str, system_prompt=None):
    msgs = [{"role": "user", "content": question}]
    if system_prompt:
        msgs.insert(0, {"role": "system", "content": system_prompt})
    return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)


def _groups(prompts, batch_size, lengths=None):
    """memit.by_prefix's batches of prompts: (their indices, the prompts as lists, how many
    tokens they all begin with — 0 below memit.SHARED_MIN, and at most the shortest prompt's
    length − 1, so every prompt keeps a last token). With `lengths` (one per prompt), each run
    of prompts that begin alike is cut into batches by length, so that little is padding."""
    if lengths is None:
        batches = by_prefix(prompts, batch_size)
    else:
        runs = (sorted(run, key=lambda i: lengths[i])
                for run in by_prefix(prompts, len(prompts) or 1))
        batches = (run[s: s + batch_size] for run in runs for s in range(0, len(run), batch_size))
    for idx in batches:
        group = [list(prompts[i]) for i in idx]
        n = min(shared(group), min(len(p) for p in group) - 1)
        yield idx, group, n if n >= SHARED_MIN else 0


def generate(model, tokenizer, prompts, max_tokens=24, batch_size=32, until=None, drafts=None,
             stats=None):
    """Greedy continuations of many token prompts, continuously batched (mlx-lm's
    BatchGenerator: a finished row leaves the batch and the next prompt takes its place).

    Prompts run in batches that share their beginning (the chat template's system turn;
    memit.by_prefix): each batch computes that beginning's KV cache once and every prompt of
    the group starts from it (the batch merges caches by copying them into its own arrays, so
    one read-only cache serves the group: same outputs, less prefill and memory). `until`: one
    predicate per prompt on the text so far; a prompt stops as soon as it holds (an audit
    needs only to see the object named), its text then ends there.

    `drafts`: one guess per prompt (or None) of the tokens greedy decoding will produce
    ("Your dog's name is Waffles.", or what the same prompt gave before). One teacher-forced
    pass checks them all, as speculative decoding does (`greedy_prefix`); a prompt whose
    verified tokens already settle its output (`until` holds, the end-of-sequence token
    comes, or max_tokens are reached) takes that output — the very text greedy decoding
    returns — and only the others are generated token by token.

    `stats`: a dict that receives the seconds of the draft check ("verify_seconds") and how
    many prompts were then generated token by token ("generated")."""
    out = [None] * len(prompts)
    t = time.perf_counter()
    if drafts is not None:
        eos = set(tokenizer.eos_token_ids)
        guessed = [i for i, d in enumerate(drafts) if d]
        verified = greedy_prefix(model, [prompts[i] for i in guessed],
                                 [drafts[i] for i in guessed], batch_size)
        for i, g in zip(guessed, verified):
            out[i] = _settled(tokenizer, g, until[i] if until else None, eos, max_tokens)
    todo = [i for i in range(len(prompts)) if out[i] is None]
    if stats is not None:
        stats.update(verify_seconds=time.perf_counter() - t, generated=len(todo))
    if not todo:
        return out
    if len(todo) < len(prompts):
        rest = generate(model, tokenizer, [prompts[i] for i in todo], max_tokens, batch_size,
                        [until[i] for i in todo] if until else None)
        for i, text in zip(todo, rest):
            out[i] = text
        return out

    from mlx_lm.generate import BatchGenerator
    from mlx_lm.models.cache import make_prompt_cache

    order, rows, caches = [], [], []
    for idx, group, n in _groups(prompts, batch_size):
        order += idx
        cache = None
        if n:
            cache = make_prompt_cache(model)
            model(mx.array([group[0][:n]]), cache=cache)
            mx.eval([c.state for c in cache])
        rows += [p[n:] if cache else p for p in group]
        caches += [cache] * len(group)
    gen = BatchGenerator(model, max_tokens=max_tokens,
                         stop_tokens=[[t] for t in tokenizer.eos_token_ids],
                         completion_batch_size=batch_size, prefill_batch_size=batch_size)
    try:
        uids = gen.insert(rows, caches=caches)
        index = {u: i for u, i in zip(uids, order)}
        tokens = {u: [] for u in uids}
        while responses := gen.next_generated():
            done = []
            for r in responses:
                if r.finish_reason != "stop":
                    tokens[r.uid].append(r.token)
                if until is not None and r.finish_reason is None \
                        and until[index[r.uid]](tokenizer.decode(tokens[r.uid])):
                    done.append(r.uid)
            if done:
                gen.remove(done)
    finally:
        gen.close()
    for u, i in index.items():
        out[i] = tokenizer.decode(tokens[u])
    return out


def _settled(tokenizer, tokens, until, eos, max_tokens):
    """The text generate() returns for a prompt whose greedy output begins with `tokens`, or
    None when those tokens do not settle it: `until` (if any) is checked after every token that
    is not end-of-sequence (it stops at the first that satisfies it), end-of-sequence ends the
    text, and so does the max_tokens-th token."""
    tokens = tokens[:max_tokens]
    for j, t in enumerate(tokens):
        if t in eos:
            return tokenizer.decode(tokens[:j])
        text = tokenizer.decode(tokens[: j + 1])
        if (until is not None and until(text)) or j + 1 == max_tokens:
            return text
    return None


def greedy_prefix(model, prompts, drafts, batch_size=32):
    """For each prompt, the tokens greedy decoding starts with, as far as its draft shows them:
    the longest prefix of the draft that is the argmax at every step, plus the argmax after it
    (speculative decoding's verification, with the draft given rather than guessed by a small
    model). One forward pass per batch of prompt + draft, right-padded (causal attention: the
    padding is never seen by the real tokens). Batches hold prompts that begin alike (the chat
    template's system turn), by length so that little is padding; that beginning runs once
    and every row reads its keys and values from one read-only copy (memit.PrefixCache: no
    growing cache to fill, 20 % less time per batch than mlx-lm's KVCache here)."""
    from mlx_lm.models.cache import KVCache, make_prompt_cache

    out = [None] * len(prompts)
    seqs = [list(p) + list(d) for p, d in zip(prompts, drafts)]
    plain = not all(isinstance(c, KVCache) for c in make_prompt_cache(model))
    for group, _, n in _groups(prompts, batch_size, [len(x) for x in seqs]):
        n = 0 if plain else n                       # no shared prefix for other caches
        T = max(len(seqs[i]) for i in group) - n
        x = mx.array([seqs[i][n:] + [0] * (T + n - len(seqs[i])) for i in group])
        cache = None
        if n:
            made = make_prompt_cache(model)
            model.model(mx.array([seqs[group[0]][:n]]), cache=made)
            cache = PrefixCache.copies(made, n, len(group))
        h = model.model(x, cache=cache)
        # position p predicts token p + 1: from the prompt's last token to the draft's last
        pos = [[len(prompts[i]) - 1 - n + j for j in range(len(drafts[i]) + 1)] for i in group]
        flat = mx.array([b * T + p for b, ps in enumerate(pos) for p in ps], dtype=mx.int32)
        best = mx.argmax(hidden_logits(model, h.reshape(-1, h.shape[-1])[flat]), axis=-1).tolist()
        k = 0
        for b, i in enumerate(group):
            am, k = best[k:k + len(pos[b])], k + len(pos[b])
            d, m = list(drafts[i]), 0
            while m < len(d) and am[m] == d[m]:
                m += 1
            out[i] = d[:m] + [am[m]]
    return out


AUDIT_QUESTIONS = 2   # chat questions of a memory's family its audit asks (the first ones)


def fact_probes(fact: Fact, tokenizer, system_prompt=None):
    """The app's own probes for a memory — its statement cue and its chat questions — as
    (kind, prompt ids, draft ids): the draft is the answer the edit was trained to give."""
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)
    probes = [("raw", raw_ids(tokenizer, relations.cues(fact)[0]), enc(" " + fact.object))]
    probes += [("chat", chat_ids(tokenizer, q, system_prompt),
                enc(relations.full_answer(fact, answer)))
               for q, answer in relations.questions(fact)[:AUDIT_QUESTIONS]]
    return probes


def audit(model, tokenizer, facts: dict, system_prompt=None, previous=None, stats=None):
    """{fact id: {"raw": bool, "chat": float share of chat questions answered, "texts": the
    probes' outputs}}. Each probe's draft is the answer its edit was trained to give, or, for
    a memory in `previous` (an earlier audit's result), what the probe answered then: after
    a small change to the weights nearly every output is the same, so one teacher-forced pass
    settles nearly every probe, the misses included. `stats`: see generate()."""
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)
    items = []
    for fid, fact in facts.items():
        before = (previous or {}).get(fid, {}).get("texts")
        for n, (kind, ids, draft) in enumerate(fact_probes(fact, tokenizer, system_prompt)):
            if before and n < len(before) and before[n]:
                draft = enc(before[n])
            items.append((fid, kind, ids, draft))
    texts = generate(model, tokenizer, [ids for _, _, ids, _ in items], max_tokens=24,
                     until=[named(facts[fid].object) for fid, _, _, _ in items],
                     drafts=[draft for *_, draft in items], stats=stats)
    res = {fid: {"raw": False, "chat_hits": 0, "chat_n": 0, "texts": []} for fid in facts}
    for (fid, kind, _, _), text in zip(items, texts):
        ok = hit(facts[fid].object, text)
        res[fid]["texts"].append(text)
        if kind == "raw":
            res[fid]["raw"] = ok
        else:
            res[fid]["chat_n"] += 1
            res[fid]["chat_hits"] += ok
    for r in res.values():
        r["chat"] = r.pop("chat_hits") / max(1, r.pop("chat_n"))
    return res


def wordings(model, tokenizer, facts: dict, system_prompt=None) -> dict:
    """{fact id: [(wording, answer's beginning, recalled?, output)]} over every wording the app
    knows of each fact (relations.every_wording: trained or not) — sleep's rehearsal asks these.
    Free greedy generation, each probe's draft the answer the wording would be trained to give."""
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)
    items = []
    for fid, fact in facts.items():
        for text, answer in relations.every_wording(fact):
            if answer is None:
                items.append((fid, text, answer, raw_ids(tokenizer, text), enc(" " + fact.object)))
            else:
                items.append((fid, text, answer, chat_ids(tokenizer, text, system_prompt),
                              enc(relations.full_answer(fact, answer))))
    texts = generate(model, tokenizer, [it[3] for it in items], max_tokens=24,
                     until=[named(facts[it[0]].object) for it in items],
                     drafts=[it[4] for it in items])
    out = {fid: [] for fid in facts}
    for (fid, text, answer, _, _), got in zip(items, texts):
        out[fid].append((text, answer, hit(facts[fid].object, got), got))
    return out


def missed(asked) -> list:
    """The wordings of one memory's `wordings()` list it did not answer, as [wording, answer's
    beginning or None] (the ledger's note, and what a rehearsal searches on)."""
    return [[text, answer] for text, answer, ok, _ in asked if not ok]


def named(obj):
    """A predicate for generate(until=...): the text names obj and something follows it (so a
    longer word, "Waffles" → "Wafflesville", is not taken for it)."""
    return lambda text: hit(obj, text) and hit(obj, text[:-1]) if text else False


def status(result: dict) -> str:
    """healthy: every chat question answered (chat is how a user asks); degraded: some chat
    question, or only the raw cue; lost: nothing."""
    if result["chat"] >= 1.0:
        return "healthy"
    if result["raw"] or result["chat"] > 0:
        return "degraded"
    return "lost"


def token_losses(model, tokenizer, text: str | None = None, window=256) -> np.ndarray:
    """Per-token NLL (float32) of held-out text, read in windows of `window` tokens."""
    ids = tokenizer.encode(text or HELDOUT.read_text())
    out = []
    for i in range(0, len(ids) - 1, window):
        chunk = mx.array([ids[i:i + window + 1]])
        logits = model(chunk[:, :-1]).astype(mx.float32)
        out.append(np.array(nn.losses.cross_entropy(logits, chunk[:, 1:], reduction="none"))[0])
    return np.concatenate(out)


def perplexity(model, tokenizer, text: str | None = None, window=256) -> float:
    """Perplexity on held-out text (never used for statistics)."""
    losses = token_losses(model, tokenizer, text, window)
    return math.exp(float(losses.sum(dtype=np.float64)) / len(losses))


def general_questions():
    return [l.strip() for l in GENERAL.read_text().splitlines() if l.strip() and not l.startswith("#")]
