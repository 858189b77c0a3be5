"""MEMIT with an AlphaEdit null-space projection, in MLX.

Notation (one MLP block):  h_out = W_down · k,   k = silu(W_gate x) ⊙ (W_up x)

A fact is written by making W_down, at a few early-middle layers l₁ < … < l_n, map the *key*
k of the fact's anchor token (the subject's last token) to a new *value*.

1. Target value (ROME/MEMIT).  At the last edited layer L add a free vector δ to the MLP output
   at every anchor position of every training prompt, and minimise over δ

       L(δ) = mean_prompts −log p(object | prompt; δ)                      (all object tokens)
              + mean_kl w · KL( p(· | kl prompt) ‖ p_δ(· | kl prompt) )       (keep the subject)
              + weight_decay · ‖δ‖² / ‖h_L‖²

   with Adam, clamping ‖δ‖ ≤ clamp_norm · ‖h_L‖ after each step, until *every* prompt's mean
   NLL is below v_loss_stop (a low mean can hide a chat prompt the model still gets wrong)
   and every held KL prompt's KL below kl_stop (a low mean can hide one whose next token
   flipped).
   v* = h_L + δ. A prompt may be given a weight w: w·δ is added at its anchors, because the
   update of step 3 writes the *mean* key and a key far from it receives only part of the
   shift — the bare statement cue's key (its text's second token) about half (docs/editing.md,
   fifteenth round); trained with w = raw_share (facts about the user, whose cue is keyed at a
   common word; editor.training_set), the cue is learned with what it will get.

2. Keys.  k_l = mean of the down_proj inputs at layer l over the anchor positions of all the
   prompts (random short prefixes + statement cue + chat-template questions).

3. Update, one layer at a time (MEMIT), spreading the residual over the remaining layers:

       R  = (v* − h_L(current)) / (n − i)
       ΔW = Rᵀ K₁ M⁻¹,   M = λC + K_pᵀK_p + K₁ᵀK₁       (R: n × d_out, K: n × d_k, one row a key)

   C = E[k kᵀ] over ordinary text (uncentred, per token); K_p = keys of earlier edits — at
   their anchors and (`protect_objects`) at their objects' own tokens (rows). M⁻¹ is never
   formed: with A = λC and U = [K_p; K₁],

       M⁻¹X = A⁻¹X − A⁻¹Uᵀ (I + U A⁻¹Uᵀ)⁻¹ U A⁻¹X          (Woodbury)

   from C⁻¹, computed once per layer, and A⁻¹K_pᵀ, kept per edit: a write costs
   O(d_k² n + r² d_k) for r protected rows, not a d_k × d_k solve (8192 wide in a 3B Llama).

4. Null-space constraint (AlphaEdit).  Keys Q whose outputs must not move at all — the keys of
   healthy memories' probes when sleep rewrites a weak one, and, with `nullspace` > 0, C's
   principal directions (eigenvalue ≥ threshold · max: what ordinary text uses most) — are held
   exactly: the least-squares update subject to ΔW Qᵀ = 0 is

       ΔW = Rᵀ (B − M⁻¹Qᵀ (Q M⁻¹Qᵀ)⁺ Q B)ᵀ,   B = M⁻¹K₁ᵀ          (Lagrange multipliers)

ΔW has rank ≤ #keys and is returned as factors A Bᵀ (A = Rᵀ, B = the solved right factor).
All solves run in float64 (NumPy); forward passes on the CPU stream in float32.
"""
import os
from contextlib import contextmanager
from dataclasses import dataclass, field

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np


@dataclass
class Hparams:
    """The `editor:` settings of configs/default.yaml (their values and reasons are there)."""
    layers: list                 # down_proj layers edited; δ is found at the last one, L
    v_steps: int                 # Adam steps for δ
    v_lr: float
    v_lr_warm: float             # Adam's rate when the search starts from a given δ
    v_loss_stop: float           # early stop when every prompt's NLL is below this
    kl_stop: float               # ... and every held KL prompt's KL below this (0: no such wait)
    kl_factor: float
    kl_about: float              # KL weight of the other families' cues about the fact's owner
    clamp_norm: float            # ‖δ‖ ≤ clamp_norm · ‖h_L‖
    weight_decay: float
    lam: float                   # weight of the covariance C (per-token normalised)
    nullspace: float             # C's directions held exactly: eigenvalue ≥ this · max (0 = none)
    contrast: float              # weight of contrast keys (same words, someone else's)
    questions: int               # chat questions per fact trained (the family's first N)
    later_turns: int             # memory neurons: its first question after this many earlier
                                 # turns also trained (the sibling's, then editor.EARLIER_TURNS)
    raw_share: float             # share of δ the bare cue of a fact about the user is trained with
    protect_objects: bool        # keep the keys of each object's own tokens in K_p
    method: str = "memit"        # "memit" (steps 2–4 here) or "neurons" (neurons.py)

    @classmethod
    def from_config(cls, d: dict) -> "Hparams":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


# ------------------------------------------------------------------ taps on the model

class _Tap:
    """Stands in for a module call: records its input/output and can add δ at positions."""

    def __init__(self, inner, record_input=False):
        self.inner, self.record_input = inner, record_input
        self.seen = None
        self.delta = None   # (d,) vector added to the output where mask == 1
        self.mask = None    # (B, T) float

    def __call__(self, x, *args, **kw):
        if self.record_input:
            self.seen = x
        y = self.inner(x, *args, **kw)
        if self.delta is not None:
            y = y + self.mask[..., None].astype(y.dtype) * self.delta.astype(y.dtype)
        return y


def _layers(model):
    return model.model.layers if hasattr(model, "model") else model.layers


def key_width(model, layer) -> int:
    """d_k, the input width of the layer's down_proj (quantized: 32 / bits values a column)."""
    lin = _layers(model)[layer].mlp["down_proj"]
    w = lin.weight.shape[1]
    return w * 32 // lin.bits if isinstance(lin, nn.QuantizedLinear) else w


@contextmanager
def taps(model, key_layers=(), delta_layer=None, resid_layer=None):
    """Temporarily wrap: down_proj of `key_layers` (record keys), down_proj of `delta_layer`
    (add δ), and the input of the block after `resid_layer` (record the residual h_L).

    Instance attributes shadow the module tree without changing it, so parameters() and
    saving are unaffected and removing them restores the exact model."""
    layers = _layers(model)
    placed = []

    def place(owner, name, tap):
        object.__setattr__(owner, name, tap)
        placed.append((owner, name))
        return tap

    out = {"keys": {}, "delta": None, "resid": None}
    try:
        for l in sorted(set(key_layers) | ({delta_layer} - {None})):
            mlp = layers[l].mlp
            tap = place(mlp, "down_proj", _Tap(mlp["down_proj"], record_input=l in key_layers))
            if l in key_layers:
                out["keys"][l] = tap
            if l == delta_layer:
                out["delta"] = tap
        if resid_layer is not None:
            if resid_layer + 1 < len(layers):
                owner, name = layers[resid_layer + 1], "input_layernorm"
            else:
                owner, name = model.model, "norm"
            out["resid"] = place(owner, name, _Tap(owner[name], record_input=True))
        yield out
    finally:
        for owner, name in reversed(placed):
            object.__delattr__(owner, name)


class PrefixCache:
    """A read-only KV cache holding a fixed prefix: attention of the tokens that follow sees
    the prefix's keys/values without recomputing them (they do not depend on δ). `offset` is
    the position (RoPE) of the first token that follows; the prefix's keys were rotated at
    their own positions when they were computed."""

    def __init__(self, keys, values, offset):
        self.keys, self.values, self.offset = keys, values, offset

    def update_and_fetch(self, keys, values):
        return (mx.concatenate([self.keys, keys], axis=2),
                mx.concatenate([self.values, values], axis=2))

    @classmethod
    def copies(cls, caches, n, rows):
        """Read-only caches for `rows` prompts from KVCaches that hold one row's first n
        tokens."""
        return [cls(mx.repeat(c.keys[..., :n, :], rows, 0),
                    mx.repeat(c.values[..., :n, :], rows, 0), n) for c in caches]

    def make_mask(self, N, return_array=False, window_size=None):
        """The causal mask of N tokens after the prefix (what an mlx-lm model asks its cache
        for when it builds its own mask)."""
        from mlx_lm.models.base import create_causal_mask

        return create_causal_mask(N, self.offset, window_size=window_size)


def run_from(model, h, start, mask=None, prefix=None, offset=0):
    """Final normed hidden states from the residual stream h entering layer `start`;
    `prefix` ([(keys, values)] per layer ≥ start) stands for the tokens before h, whose first
    column sits at position `offset`; it needs the `mask` that goes with it (queries × prefix
    + h columns, as `_packed` makes)."""
    from mlx_lm.models.base import create_attention_mask

    if prefix and mask is None:
        raise ValueError("run_from: a prefix needs its attention mask")
    caches = [PrefixCache(k, v, offset) for k, v in prefix] if prefix \
        else [None] * len(_layers(model))
    if mask is None:
        mask = create_attention_mask(h, None)
    for layer, c in zip(_layers(model)[start:], caches):
        h = layer(h, mask, c)
    return model.model.norm(h)


def hidden_logits(model, hidden):
    """LM head on final (normed) hidden states."""
    if getattr(model, "args", None) is not None and getattr(model.args, "tie_word_embeddings", False):
        return model.model.embed_tokens.as_linear(hidden)
    if hasattr(model, "lm_head"):
        return model.lm_head(hidden)
    return model.model.embed_tokens.as_linear(hidden)


# ------------------------------------------------------------------ prompts as a batch

@dataclass
class Prompt:
    """Token ids (prompt followed by the target), where the target starts, and the key
    positions as (anchor index, token index); `shares`: the part of δ each key receives, if
    not all of it (a memory neuron's opening there)."""
    ids: list
    target_start: int
    keys: list
    shares: list | None = None


def batch(prompts, pad_id=0):
    """Right-padded arrays. Causal attention makes right padding exact for real tokens."""
    T = max(len(p.ids) for p in prompts)
    B = len(prompts)
    ids = np.full((B, T), pad_id, dtype=np.int32)
    key_mask = np.zeros((B, T), dtype=np.float32)
    tgt_mask = np.zeros((B, T), dtype=np.float32)   # position t predicts ids[t+1]
    for b, p in enumerate(prompts):
        ids[b, : len(p.ids)] = p.ids
        for _, t in p.keys:
            key_mask[b, t] = 1.0
        tgt_mask[b, p.target_start - 1: len(p.ids) - 1] = 1.0
    return mx.array(ids), mx.array(key_mask), mx.array(tgt_mask)


def _anchor_sum(x, prompts, n_anchors, shift=0):
    """(n_anchors, d) sums of x[b, t − shift] over each anchor's positions t. x: (B, T, d)."""
    xs = np.array(x.astype(mx.float32), dtype=np.float64)
    out = np.zeros((n_anchors, xs.shape[-1]))
    for b, p in enumerate(prompts):
        for a, t in p.keys:
            out[a] += xs[b, t - shift]
    return out


def forward(model, x, start, stop, save=(), mask=None, cache=None):
    """The residual stream through layers start … stop (inclusive), nothing after: x is token
    ids when start == 0, else the residual entering `start`; `cache` (one per layer from
    `start`) holds tokens before x. Returns (output of `stop`, {l: residual entering l} for l
    in `save`). Llama-family models (h₀ = embed_tokens(ids))."""
    from mlx_lm.models.base import create_attention_mask, create_causal_mask

    h = model.model.embed_tokens(x) if start == 0 else x
    cache = cache or [None] * (stop + 1 - start)
    if mask is None:
        offset = cache[0].offset if cache[0] is not None else 0
        mask = create_causal_mask(h.shape[1], offset) if offset else create_attention_mask(h, None)
    saved = {}
    for l, c in zip(range(start, stop + 1), cache):
        if l in save:
            saved[l] = h
        h = _layers(model)[l](h, mask, c)
    return h, saved


def read(model, prompts, n_anchors, key_layers=(), resid_layer=None, batch_size=32):
    """Keys and h_L of prompts, running the model only as far as it needs to (layers after
    max(key layers, resid_layer) do not matter). Returns ({layer: keys (n_anchors, d_k)},
    h_L (n_anchors, d) or None), each the mean over an anchor's positions.

    Prompts run sorted, in groups of `batch_size`, right-padded (causal: exact); the tokens a
    group begins with (the chat template's system turn) run once, up to the group's first
    key position, and every prompt of the group continues from their keys and values."""
    stop = max(list(key_layers) + ([resid_layer] if resid_layer is not None else []))
    keys, resid = {l: 0.0 for l in key_layers}, 0.0
    count = np.zeros(n_anchors)
    for p in prompts:
        for a, _ in p.keys:
            count[a] += 1
    if (count == 0).any():
        raise ValueError("an anchor has no key position in any prompt")
    for idx in by_prefix([p.ids for p in prompts], batch_size):
        group = [prompts[i] for i in idx]
        n = min([shared(p.ids for p in group)] + [t for p in group for _, t in p.keys])
        n, cache = (n, _shared_prefix(model, group[0].ids[:n], len(group), stop)) \
            if n >= SHARED_MIN else (0, None)
        ids, _, _ = batch([Prompt(p.ids[n:], 0, []) for p in group])
        with taps(model, key_layers=key_layers) as t:
            h, _ = forward(model, ids, 0, stop, cache=cache)
            for l, tap in t["keys"].items():
                keys[l] = keys[l] + _anchor_sum(tap.seen, group, n_anchors, n)
        if resid_layer is not None:
            resid = resid + _anchor_sum(h, group, n_anchors, n)
    keys = {l: k / count[:, None] for l, k in keys.items()}
    return keys, resid / count[:, None] if resid_layer is not None else None


def mlp_inputs(model, batches, layer, batch_size=32):
    """The inputs of layer `layer`'s MLP (after its norm) — what a memory neuron's gate reads
    (neurons.py). `batches`: token id arrays (B, T), every row returned, or lists of Prompts,
    the rows at each prompt's key positions returned in the prompts' order; these run as
    `read` runs them: grouped, right-padded, the beginning a group shares run once.
    Returns (n, d) float32."""
    block = _layers(model)[layer]
    mlp = block.mlp
    seen = []

    def record(x):
        seen.append(x)
        return mlp(x)

    def run(ids, cache=None):
        forward(model, ids, 0, layer, cache=cache)
        return seen.pop().astype(mx.float32)

    out = []
    object.__setattr__(block, "mlp", record)
    try:
        for b in batches:
            if not isinstance(b, list):
                x = run(mx.array(b))
                out.append(np.array(x.reshape(-1, x.shape[-1])))
                continue
            rows = [None] * len(b)
            for idx in by_prefix([p.ids for p in b], batch_size):
                group = [b[i] for i in idx]
                n = min([shared(p.ids for p in group)] + [t for p in group for _, t in p.keys])
                n, cache = (n, _shared_prefix(model, group[0].ids[:n], len(group), layer)) \
                    if n >= SHARED_MIN and len(group) > 1 else (0, None)
                x = run(batch([Prompt(p.ids[n:], 0, []) for p in group])[0], cache)
                for j, (i, p) in enumerate(zip(idx, group)):
                    rows[i] = np.array(x[j, mx.array([t - n for _, t in p.keys])]) \
                        if p.keys else np.zeros((0, x.shape[-1]), np.float32)
            if rows:
                out.append(np.concatenate(rows))
    finally:
        object.__delattr__(block, "mlp")
    return np.concatenate(out) if out else np.zeros((0, mlp_width(model, layer)), np.float32)


def mlp_width(model, layer) -> int:
    """d, the width of the residual stream entering layer `layer`'s MLP."""
    lin = _layers(model)[layer].mlp["gate_proj"]
    w = lin.weight.shape[1]
    return w * 32 // lin.bits if isinstance(lin, nn.QuantizedLinear) else w


SHARED_MIN = 8   # tokens a batch of prompts must begin with to run them once


def by_prefix(seqs, batch_size):
    """Index batches (at most `batch_size` each) of token sequences, for every batched pass
    over prompts (keys read here, probes' generation and draft checks): the sequences that
    begin with the same SHARED_MIN tokens (a chat template's system turn) batched together,
    in sorted order so a batch shares as long a beginning as it can; the sequences that share
    their beginning with no other batched together, after them. A batch of chat questions
    thus never holds a bare cue, whose beginning it does not share."""
    seqs = [list(s) for s in seqs]
    runs = []
    for i in sorted(range(len(seqs)), key=lambda i: seqs[i]):
        if runs and len(seqs[i]) > SHARED_MIN \
                and seqs[runs[-1][0]][:SHARED_MIN] == seqs[i][:SHARED_MIN]:
            runs[-1].append(i)
        else:
            runs.append([i])
    alone = [i for r in runs if len(r) == 1 for i in r]
    for r in [r for r in runs if len(r) > 1] + ([alone] if alone else []):
        for s in range(0, len(r), batch_size):
            yield r[s: s + batch_size]


def shared(seqs) -> int:
    """How many tokens the sequences all begin with."""
    return len(os.path.commonprefix([list(s) for s in seqs]))


def _shared_prefix(model, ids, copies, stop):
    """Read-only caches (layers 0 … stop) of the tokens `ids`, for `copies` prompts."""
    from mlx_lm.models.cache import KVCache

    made = [KVCache() for _ in range(stop + 1)]
    forward(model, mx.array([ids]), 0, stop, cache=made)
    return PrefixCache.copies(made, len(ids), copies)


# ------------------------------------------------------------------ 1. target value v*

def _pack(lengths):
    """Rows of width S holding segments of the given lengths (first fit, longest first), S
    chosen between the longest and twice it to leave the fewest empty slots. Returns
    (S, [(row, column)] per segment, number of rows)."""
    best = None
    for S in range(max(lengths), 2 * max(lengths) + 1):
        free, place = [], [None] * len(lengths)
        for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
            r = next((r for r, f in enumerate(free) if f >= lengths[i]), None)
            if r is None:
                free.append(S)
                r = len(free) - 1
            place[i] = (r, S - free[r])
            free[r] -= lengths[i]
        if best is None or len(free) * S < best[2] * best[0]:
            best = (S, place, len(free))
    return best


class _Placed:
    """A one-pass KV cache whose rows start at their own positions: `offset` (B,) is each
    row's RoPE position of its first token. It keeps the keys and values it is handed."""

    def __init__(self, offset):
        self.offset, self.keys, self.values = offset, None, None

    def update_and_fetch(self, keys, values):
        self.keys, self.values = keys, values
        return keys, values


def _groups(lengths, slack=1.5):
    """Indices sorted by length, split where a length exceeds slack x its group's first:
    batches of similar length, little right padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out = []
    for i in order:
        if out and lengths[i] <= slack * lengths[out[-1][0]] + 2:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _placed_batches(xs, first):
    """Right-padded batches of similar length from sequences xs (token ids or (T, d) residuals),
    each row at its own position first[i]; yields (indices, batch, offsets, causal mask)."""
    for idx in _groups([len(x) for x in xs]):
        T = max(len(xs[i]) for i in idx)
        if isinstance(xs[idx[0]], mx.array):
            b = mx.stack([mx.pad(xs[i], [(0, T - len(xs[i])), (0, 0)]) for i in idx])
        else:
            b = np.zeros((len(idx), T), dtype=np.int32)
            for j, i in enumerate(idx):
                b[j, : len(xs[i])] = xs[i]
            b = mx.array(b)
        causal = mx.array(np.tril(np.ones((T, T), bool))[None, None])
        yield idx, b, mx.array(np.asarray([first[i] for i in idx], dtype=np.int32)), causal


def _placed_run(model, seqs, first, start, stop):
    """Each sequence (token ids when start is 0, else (T_i, d) residuals) through layers
    start … stop at its own positions (right padding, causal: exact). Returns one (T_i, d)
    output per sequence."""
    out = [None] * len(seqs)
    for idx, b, offs, causal in _placed_batches(seqs, first):
        h, _ = forward(model, b, start, stop, mask=causal,
                       cache=[_Placed(offs) for _ in range(stop + 1 - start)])
        for j, i in enumerate(idx):
            out[i] = h[j, : len(seqs[i])]
    return out


def _placed_kv(model, hs, first, start):
    """The keys and values that layers start … N−1 make of the residuals hs (one (T_i, d) per
    sequence, T_i may be 0) at their positions: per layer (keys, values), each (H, Σ T_i, hd),
    the sequences' tokens one after the other."""
    n_layers = len(_layers(model))
    got = [[None] * len(hs) for _ in range(start, n_layers)]
    live = [i for i, x in enumerate(hs) if len(x)]
    for idx, b, offs, causal in _placed_batches([hs[i] for i in live], [first[i] for i in live]):
        caches = [_Placed(offs) for _ in range(start, n_layers)]
        forward(model, b, start, n_layers - 1, mask=causal, cache=caches)  # only K, V are read
        for li, c in enumerate(caches):
            for j, i in enumerate(idx):
                t = len(hs[live[i]])
                got[li][live[i]] = (c.keys[j, :, :t], c.values[j, :, :t])
    return [(mx.concatenate([g[0] for g in layer if g is not None], axis=1),
             mx.concatenate([g[1] for g in layer if g is not None], axis=1)) for layer in got]


def _packed(model, prompts, L):
    """All prompts in one small batch for the δ search, with the tokens that never see δ set
    aside and the rest packed densely.

    A prompt's *tail* starts at its first key token (or the position predicting its first
    target token, if earlier); only the tail depends on δ. Tails are packed several to a row
    (`_pack`). Layers ≤ L, and every layer on the tokens before a tail, do not depend on δ:
    they run once, each prompt at the RoPE positions its tail has in the packed row (C + its
    column, C = the longest head; `_placed_run`: rows of a like length batched, each with its
    own offset, so no row is padded to the longest). Their keys and
    values for layers > L become each packed row's fixed KV prefix: the heads of the prompts
    in that row side by side. A boolean mask lets a tail token see its own prompt's head and
    the earlier tokens of its own tail only (a padding slot sees itself).

    Returns (h: residual entering L+1 at the packed tails (R, S, d), mask (R, 1, S, P + S),
    prefix KVs per layer > L or None, C, place: (row, column, cut) per prompt)."""
    cuts = [min([t for _, t in p.keys] + [p.target_start - 1]) for p in prompts]
    tails = [len(p.ids) - c for p, c in zip(prompts, cuts)]
    S, slots, R = _pack(tails)
    C = max(cuts)
    first = [C + col - c for (_, col), c in zip(slots, cuts)]   # RoPE position of token 0
    # pass 1: every prompt through layers ≤ L at its own positions; then the heads (tokens
    # before the tail) through the layers > L, keeping their keys and values
    h1 = _placed_run(model, [p.ids for p in prompts], first, 0, L)
    heads = [[] for _ in range(R)]          # (prompt, first column in the row's prefix)
    width = [0] * R
    for i, ((r, _), c) in enumerate(zip(slots, cuts)):
        heads[r].append((i, width[r]))
        width[r] += c
    P = max(width)
    prefix = None
    if P > 0:
        kv = _placed_kv(model, [x[:c] for x, c in zip(h1, cuts)], first, L + 1)
        head_at = np.cumsum([0] + cuts)                 # prompt i's heads in kv's token axis
        src = np.zeros((R, P), dtype=np.int32)          # flat head-token index per prefix slot
        for r in range(R):
            for i, at in heads[r]:
                src[r, at: at + cuts[i]] = head_at[i] + np.arange(cuts[i])
        src = mx.array(src.reshape(-1))

        def gather(a):                                  # (H, Σ cuts, hd) -> (R, H, P, hd)
            return a[:, src].reshape(a.shape[0], R, P, -1).transpose(1, 0, 2, 3)

        prefix = [(gather(k), gather(v)) for k, v in kv]
        mx.eval(prefix)
    # the packed tails and their mask
    starts = np.cumsum([0] + [len(p.ids) for p in prompts])     # prompt i's rows in h1, joined
    src = np.zeros((R, S), dtype=np.int32)
    allowed = np.zeros((R, S, P + S), dtype=bool)
    allowed[:, np.arange(S), P + np.arange(S)] = True   # padding sees itself
    for r in range(R):
        for i, at in heads[r]:
            col, t = slots[i][1], tails[i]
            js = np.arange(col, col + t)
            src[r, js] = starts[i] + cuts[i] + js - col
            allowed[r, col: col + t, at: at + cuts[i]] = True
            allowed[r, col: col + t, P + col: P + col + t] |= np.tril(np.ones((t, t), bool))
    h = mx.concatenate(h1)[mx.array(src.reshape(-1))].reshape(R, S, -1)
    mx.eval(h)
    place = [(r, col, c) for (r, col), c in zip(slots, cuts)]
    return h, mx.array(allowed[:, None]), prefix, C, place


def compute_delta(model, prompts, kl_prompts, hp: Hparams, log=None, weights=None, init=None,
                  kl_weights=None, kl_held=None, pause=None):
    """Optimise δ at layer L = hp.layers[-1] (see module docstring). Returns (δ, final NLL).
    `weights`: one per prompt, the share of δ added at its anchors (default 1; a prompt's own
    `shares`, per key, come first). `init`: the δ to start from (default 0), searched on at
    the rate `v_lr_warm`: Adam's first steps move every coordinate by about the rate, and
    v_lr's would throw a δ that nearly fits far off before it comes back. `kl_weights`: one
    per KL prompt, its KL term's weight (default hp.kl_factor each); the term is their mean.
    `kl_held`: one bool per KL prompt, those whose KL must fall below `kl_stop` before the
    search stops (default: every one). `pause`: called after every step, when nothing is
    left to compute (the REPL's Learner lets a reply use the model there: repl.Learner).

    Layers ≤ L do not depend on δ and neither do tokens before a prompt's first key: they run
    once (`_packed`). Each Adam step runs one batch — every prompt and the KL prompts — through
    layers L+1 … N-1, and the LM head only where a loss is read."""
    L = hp.layers[-1]
    rows = list(prompts) + list(kl_prompts)
    h, mask, prefix, C, place = _packed(model, rows, L)
    R, S, d = h.shape
    at = lambda b, t: place[b][0] * S + place[b][1] + t - place[b][2]   # flat packed index
    key_mask = np.zeros(R * S, dtype=np.float32)
    train_keys, all_keys = [], []
    for b, p in enumerate(rows):
        for j, (_, t) in enumerate(p.keys):
            share = p.shares[j] if p.shares is not None else \
                weights[b] if weights is not None and b < len(prompts) else 1.0
            key_mask[at(b, t)] = share
            if b < len(prompts):
                all_keys.append(at(b, t))
                if share >= 0.5:                        # ‖h‖ where δ is (nearly) whole
                    train_keys.append(at(b, t))
    # Position t - 1 predicts token t. Target tokens predicted before the prompt's first key
    # ("You live in" when only the answer names the anchor) cannot depend on δ: left out, so
    # the NLL — and the stop rule — measure only what δ can change.
    sel, tok = [], []
    cols = []
    for b, p in enumerate(prompts):
        first = min(t for _, t in p.keys)
        ts = [t for t in range(p.target_start, len(p.ids)) if t - 1 >= first]
        for t in ts:
            sel.append(at(b, t - 1))
            tok.append(p.ids[t])
            cols.append((b, 1.0 / len(ts)))
    per_prompt = np.zeros((len(prompts), len(cols)), dtype=np.float32)
    for j, (b, w) in enumerate(cols):
        per_prompt[b, j] = w
    kl_sel = mx.array([at(len(prompts) + i, len(p.ids) - 1) for i, p in enumerate(kl_prompts)],
                      dtype=mx.int32)
    kl_w = mx.array(np.asarray([hp.kl_factor] * len(kl_prompts) if kl_weights is None
                               else kl_weights, dtype=np.float32))
    held = np.ones(len(kl_prompts), bool) if kl_held is None else np.asarray(kl_held, bool)
    if held.shape != (len(kl_prompts),):
        raise ValueError(f"kl_held has {held.size} entries for {len(kl_prompts)} KL prompts")
    sel, tok = mx.array(sel, dtype=mx.int32), mx.array(tok, dtype=mx.int32)
    per_prompt = mx.array(per_prompt)
    hn = np.linalg.norm(np.array(h.reshape(R * S, d)[mx.array(train_keys or all_keys)],
                                 dtype=np.float64), axis=-1)
    h_norm = float(hn.mean())   # ‖h_L‖ at the training keys
    key_mask = mx.array(key_mask.reshape(R, S))[..., None]

    def logprobs(delta):
        hid = run_from(model, h + key_mask * delta, L + 1, mask, prefix, C).reshape(-1, d)
        lp = nn.log_softmax(hidden_logits(model, hid[sel]).astype(mx.float32), axis=-1)
        lk = nn.log_softmax(hidden_logits(model, hid[kl_sel]).astype(mx.float32), axis=-1) \
            if len(kl_prompts) else None
        return lp, lk

    base_kl = None
    if len(kl_prompts):
        base_kl = mx.stop_gradient(logprobs(mx.zeros((d,), dtype=mx.float32))[1])
        mx.eval(base_kl)

    params = {"delta": mx.zeros((d,), dtype=mx.float32) if init is None
              else mx.array(np.asarray(init, np.float32))}
    opt = optim.Adam(learning_rate=hp.v_lr if init is None else hp.v_lr_warm)

    def loss_fn(p):
        lp, lk = logprobs(p["delta"])
        nlls = per_prompt @ -mx.take_along_axis(lp, tok[:, None], axis=-1)[:, 0]
        loss = nlls.mean() + hp.weight_decay * (p["delta"] ** 2).sum() / (h_norm ** 2)
        kls = mx.zeros((0,))
        if base_kl is not None:
            kls = (mx.exp(base_kl) * (base_kl - lk)).sum(-1)
            loss = loss + (kl_w * kls).mean()
        return loss, (nlls, kls)

    grad_fn = mx.value_and_grad(loss_fn)
    max_norm = hp.clamp_norm * h_norm
    nll_val = float("inf")
    for step in range(hp.v_steps):
        (loss, (nlls, kls)), g = grad_fn(params)
        mx.eval(loss, nlls, kls, g)
        nll_val = float(nlls.mean())
        if log:
            log(step, float(loss), nll_val)
        # every prompt, not just on average; and every KL prompt near where it was
        if float(nlls.max()) < hp.v_loss_stop and \
                (hp.kl_stop <= 0 or not held.any() or np.array(kls)[held].max() < hp.kl_stop):
            break
        opt.update(params, g)
        dn = mx.sqrt((params["delta"] ** 2).sum())
        params["delta"] = mx.where(dn > max_norm, params["delta"] * (max_norm / dn),
                                   params["delta"])
        mx.eval(params)
        if pause:
            pause()
    return np.array(params["delta"], dtype=np.float64), nll_val


# ------------------------------------------------------------------ 2. covariance

def covariance(model, token_batches, layers, progress=None):
    """C_l = E[k kᵀ] (uncentred, per token) of the down_proj inputs over the given text."""
    acc = {l: None for l in layers}
    n = 0
    for i, ids in enumerate(token_batches):
        x = mx.array(np.asarray(ids, dtype=np.int32))
        with taps(model, key_layers=layers) as t:
            model.model(x)
            for l in layers:
                k = t["keys"][l].seen.reshape(-1, t["keys"][l].seen.shape[-1]).astype(mx.float32)
                kk = np.array(k.T @ k, dtype=np.float64)
                acc[l] = kk if acc[l] is None else acc[l] + kk
        n += x.size
        if progress:
            progress(i + 1, len(token_batches))
    return {l: acc[l] / n for l in layers}, n


def principal(C, threshold):
    """Rows spanning C's principal subspace — its eigenvectors with eigenvalue ≥ threshold ·
    max eigenvalue, the directions ordinary text uses most (AlphaEdit's preserved knowledge)
    — or None when threshold is 0."""
    if threshold <= 0:
        return None
    w, V = np.linalg.eigh(C)
    return V[:, w >= threshold * w.max()].T


def inverse(C):
    """C⁻¹ (float64, symmetric), once per layer: every solve starts from it."""
    Ci = np.linalg.inv(np.asarray(C, dtype=np.float64))
    return (Ci + Ci.T) / 2


def inverse_of(Cinv, lam, U, W):
    """X ↦ M⁻¹X for M = λC + UᵀU (U: r × d_k rows, W = C⁻¹Uᵀ), by Woodbury:
    M⁻¹X = A⁻¹X − A⁻¹Uᵀ (I + U A⁻¹Uᵀ)⁻¹ U A⁻¹X with A⁻¹ = C⁻¹/λ."""
    W = W / lam
    G = np.eye(len(U)) + U @ W

    def apply(X):
        Y = Cinv @ X / lam
        return Y - W @ np.linalg.solve(G, U @ Y)
    return apply


def solve(K, Cinv, lam, Kp=None, Wp=None, Q=None, Kc=None, contrast=0.0):
    """Right factor B (d_k × n) such that ΔW = RᵀBᵀ for residuals R (n × d_out) at keys K
    (n × d_k rows).

    MEMIT:  ΔW = RᵀK M⁻¹,  M = λC + K_pᵀK_p + w K_cᵀK_c + KᵀK      → B = M⁻¹Kᵀ
    then, with Q (rows held exactly): B ← B − M⁻¹Qᵀ (Q M⁻¹Qᵀ)⁺ Q B, so that ΔW Qᵀ = 0.

    `Cinv` = C⁻¹; `Wp` = C⁻¹K_pᵀ if known. K_c are *contrast* keys (the same words said of
    someone else) whose outputs should not move, weighted by w = `contrast`: a targeted
    version of the covariance term.
    """
    K = np.asarray(K, dtype=np.float64)
    rows, ws = [K], [Cinv @ K.T]
    if Kp is not None and len(Kp):
        rows.append(np.asarray(Kp, dtype=np.float64))
        ws.append(Wp if Wp is not None else Cinv @ rows[-1].T)
    if Kc is not None and len(Kc) and contrast > 0:
        rows.append(np.sqrt(contrast) * np.asarray(Kc, dtype=np.float64))
        ws.append(Cinv @ rows[-1].T)
    Minv = inverse_of(Cinv, lam, np.concatenate(rows), np.concatenate(ws, axis=1))
    B = Minv(K.T)
    if Q is not None and len(Q):
        Q = np.asarray(Q, dtype=np.float64)
        MQ = Minv(Q.T)
        B = B - MQ @ np.linalg.lstsq(Q @ MQ, Q @ B, rcond=None)[0]
    return B


def apply_update(model, prompts, n_anchors, delta, hp, cinv, kp, hold, set_delta,
                 contrast_prompts=()):
    """The MEMIT layer loop for one fact: its wanted output z = h_L + δ at each anchor,
    written by `consolidate` (one target). Calls set_delta(layer, A, B) to add A Bᵀ to
    W_down[layer]. Returns (per-layer keys used, for K_p bookkeeping; z)."""
    _, h0 = read(model, [_cut(p) for p in prompts], n_anchors, resid_layer=hp.layers[-1])
    z = h0 + delta[None, :]
    part = consolidate(model, [Target(prompts, z, list(contrast_prompts))], hp, cinv, set_delta,
                       kp, hold)[0]
    return {l: K for l, (_, _, K) in part.items()}, z


def _cut(p):
    """The prompt up to its last key position: all a key or h_L at an anchor depends on."""
    return Prompt(p.ids[: max(t for _, t in p.keys) + 1], 0, p.keys)


# ------------------------------------------------------------------ 4. batch consolidation

@dataclass
class Target:
    """One memory for `consolidate`: its prompts (anchors 0 … n-1), the wanted output z of
    layer L at each anchor (n, d), and contrast prompts (one key position each)."""
    prompts: list
    z: np.ndarray
    contrast: list = field(default_factory=list)


def consolidate(model, targets, hp, cinv, set_delta, kp=None, hold=None, chunk=48):
    """MEMIT's batch form: every target written in one solve per layer,

        ΔW_l = R_lᵀ K_l (λC + K_lᵀK_l + w K_cᵀK_c + K_pᵀK_p)⁻¹,   R_l = (Z − H_L) / (n − i)

    (`solve`; `cinv` {layer: C⁻¹}, `kp` {layer: (K_p rows, C⁻¹K_pᵀ)} of the memories left
    out), under the null-space constraint ΔW_l Qᵀ = 0 when `hold` gives rows Q for a layer.

    with K_l, H_L the keys and layer-L outputs of *all* targets, read after the updates of the
    layers below l (K_p: memories left out, kept in place). No v* optimisation: Z was found
    when each memory was learned. Sleep calls it after reverting the memories' wake edits, so
    the sequential edits' interference is replaced by one joint least-squares solution.

    Prompts are cut after their last key position (causal: exact) and run in length-sorted
    chunks only up to layer L; each pass starts from the residual saved at the layer below.
    Returns, per target, {layer: (A (d_out, n), B (d_k, n), K (n, d_k))} with ΔW = Σ A Bᵀ."""
    kp, hold = kp or {}, hold or {}
    L, layers = hp.layers[-1], hp.layers
    offs = np.cumsum([0] + [len(t.z) for t in targets])
    n = int(offs[-1])
    entries = []   # (Prompt with global anchor ids, is_contrast)
    for ti, t in enumerate(targets):
        for p in t.prompts:
            entries.append((Prompt(_cut(p).ids, 0,
                                   [(int(offs[ti]) + a, pos) for a, pos in p.keys]), False))
        for p in t.contrast:
            pos = p.keys[0][1]
            entries.append((Prompt(p.ids[: pos + 1], 0, [(ti, pos)]), True))
    entries.sort(key=lambda e: len(e[0].ids))
    chunks = [entries[i: i + chunk] for i in range(0, len(entries), chunk)]
    state = [None] * len(chunks)      # residual entering the pass's start layer, per chunk
    Z = np.concatenate([t.z for t in targets]).astype(np.float64)
    out = [dict() for _ in targets]
    for i, l in enumerate(layers):
        start = 0 if i == 0 else layers[i - 1]
        K_sum = np.zeros((n, cinv[l].shape[0]))
        H_sum = np.zeros((n, Z.shape[1]))
        cnt = np.zeros(n)
        Kc = []
        for c, ch in enumerate(chunks):
            prompts = [e[0] for e in ch]
            x = batch(prompts)[0] if start == 0 else state[c]
            with taps(model, key_layers=[l]) as tp:
                h, saved = forward(model, x, start, L, save={l})
                mx.eval(h, tp["keys"][l].seen)
                keys = np.array(tp["keys"][l].seen.astype(mx.float32), dtype=np.float64)
            hs = np.array(h.astype(mx.float32), dtype=np.float64)
            state[c] = saved[l]
            for b, (p, is_c) in enumerate(ch):
                for a, pos in p.keys:
                    if is_c:
                        Kc.append(keys[b, pos])
                    else:
                        K_sum[a] += keys[b, pos]
                        H_sum[a] += hs[b, pos]
                        cnt[a] += 1
        if (cnt == 0).any():
            raise ValueError("a target anchor has no key position in its prompts")
        K, H = K_sum / cnt[:, None], H_sum / cnt[:, None]
        R = (Z - H) / (len(layers) - i)
        Kc = np.stack(Kc) if Kc else None
        Kp, Wp = kp.get(l, (None, None))
        B = solve(K, cinv[l], hp.lam, Kp, Wp, hold.get(l), Kc, hp.contrast)
        set_delta(l, R.T, B)
        for ti in range(len(targets)):
            s_ = slice(int(offs[ti]), int(offs[ti + 1]))
            out[ti][l] = (R[s_].T, B[:, s_], K[s_])
    return out
