"""Memory neurons: each fact written as one gated neuron added to an MLP (`editor.method:
neurons`, the default; docs/editing.md, twenty-seventh round).

Notation (the MLP of layer L, SwiGLU):  y = W_down (silu(W_gate x) ⊙ (W_up x)),  x its input.
A memory adds one hidden unit — a row g to W_gate, a row u to W_up, a column d to W_down:

    y' = y + d · silu(gᵀx) · (uᵀx)

1. Value.  d = δ, the v* search's shift of layer L's output at the fact's anchor tokens
   (memit.compute_delta, MEMIT's step 1, unchanged).

2. Gate.  g separates the anchor inputs x⁺ of the fact's prompts (the statement cue, alone and
   after prefixes, and the chat questions, alone and after an earlier turn of a conversation:
   editor.later_prompts) from inputs that must not recall it: ordinary text
   the model writes itself (stats "negatives"), the same words said of someone else ("Her dog's
   name is", "What is his dog's name?", "The dog"), the anchors of every other memory and, more
   lightly, every other token of their own prompts (docs/editing.md, fortieth round). It is
   a weighted, L2-regularised logistic regression without intercept (the MLP has no bias),

       min_g  Σᵢ wᵢ log(1 + exp(−yᵢ gᵀxᵢ)) + α‖g‖²,        yᵢ = +1 for x⁺, −1 otherwise,

   solved by Newton's method, then scaled so that the median positive has gᵀx = T. silu is
   ~linear above 0 and ~0 below −T: the unit is open on the fact's anchors, closed elsewhere.
   T is large (48): silu's negative dip (−0.28 at −1.3) is then < 0.6 % of the open output,
   so text just below the boundary ("The" for a unit keyed at "The instrument I play") leaks
   almost nothing (docs/editing.md, twenty-eighth round: T 6 → 48, neighbours 0.76 → 0.80).

3. Level.  u makes the unit's output 1 at every positive, so each prompt receives the whole δ
   (a MEMIT solve gives the bare cue about half, docs/editing.md fifteenth round): with
   aᵢ = silu(gᵀxᵢ) and A = diag(a) X⁺,

       u = u₀ + Aᵀ(AAᵀ + βI)⁻¹(r − A u₀),     u₀ = x̄⁺ / ‖x̄⁺‖²,   rᵢ = 1 / ‖aᵢxᵢ‖

   with A's rows aᵢxᵢ scaled to unit norm (so the small ridge β weighs on every positive
   alike): the least change of u₀ that levels the positives — those the gate opens
   (gᵀx > T/4; a positive it cannot tell from a negative is left, not forced).

4. Settle (sleep).  A gate is trained closed on the anchors of the memories written before
   it, not of later ones; where it opens on those, sleep shuts it by the least change ordinary
   text notices that holds it at its own anchors (`shut`, Editor.settle; `sleep.settle_gates`,
   off by default: measured at 100 facts it recalled less, docs/editing.md 38th round).

A memory is three vectors (3 × d floats, float16 on disk); removing it removes its unit, so
a revert is exact and memories do not write over one another. Facts that share an anchor
("my dog": its name and its breed) have the same x⁺ — the later unit adds what the earlier
ones' shift still lacks (its v* search runs with them in the weights and trains their prompts
too), and the earlier ones' positives are not its negatives.
"""
import numpy as np

T = 48.0           # gate pre-activation at the median positive
ALPHA = 1.0        # ridge, per 1000 ordinary-text rows (inputs scaled to unit RMS)
BETA = 1e-3        # levelling ridge
W_POS = 0.25       # positives' total weight, relative to the ordinary-text rows'
W_MORE = 0.25      # further wordings' total weight, likewise
W_HARD = 80.0      # weight of each contrast row (someone else's wording)
W_OTHER = 20.0     # weight of each other memory's anchor row
W_TOLD = 5.0       # weight of each row at any other token of another memory's prompts
W_STRANGER = 5.0   # weight of each row of others' facts and their continuations (stats)
NEWTON_STEPS = 25


def silu(s):
    return s / (1 + np.exp(-np.maximum(s, -500.0)))   # below −500 it is 0 all the same


def logistic(X, y, w, alpha, steps=NEWTON_STEPS):
    """argmin_g Σ wᵢ log(1 + exp(−yᵢ gᵀxᵢ)) + α‖g‖² by Newton's method. The gradient is
    float64, so the minimum found is float64's; the Hessian, which only sets the step, is
    summed in float32 (2.5× faster, same g to 1e-7)."""
    g = np.zeros(X.shape[1])
    eye = np.eye(X.shape[1])
    X32 = X.astype(np.float32)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-y * (X @ g)))
        grad = -(X.T @ (w * y * (1 - p))) + 2 * alpha * g
        H = ((X32 * (w * p * (1 - p)).astype(np.float32)[:, None]).T @ X32).astype(np.float64) \
            + 2 * alpha * eye
        step = np.linalg.solve(H, grad)
        g -= step
        if np.abs(step).max() < 1e-7:
            break
    return g


def fit(pos, ordinary, hard=None, others=None, more=None, told=None, strangers=None):
    """(g, u, level) for one memory. pos: (p, d) anchor inputs of its prompts; ordinary:
    (n, d) inputs of ordinary text; hard: contrast inputs; others: other memories' anchor
    inputs; more: anchor inputs of its further wordings (relations.variants), positives with
    a total weight of their own, so that many of them do not outweigh the prompts the v*
    search trained; told: inputs at every token of the other memories' own prompts, each
    W_TOLD; strangers: inputs over others' facts and the model's continuations of them
    (stats "strangers"), each W_STRANGER. The unit gives `level` (≈ 1) at the positives it
    opens on: its value column is δ / level."""
    pos = np.asarray(pos, np.float64)
    if len(pos) == 0:
        raise ValueError("a memory neuron needs at least one anchor input")
    parts = [(pos, +1.0, W_POS * len(ordinary) / len(pos)),
             (np.asarray(ordinary, np.float64), -1.0, 1.0)]
    if more is not None and len(more):
        more = np.asarray(more, np.float64)
        parts.append((more, +1.0, W_MORE * len(ordinary) / len(more)))
        pos_all = np.concatenate([pos, more])
    else:
        pos_all = pos
    for rows, w in ((hard, W_HARD), (others, W_OTHER), (told, W_TOLD),
                    (strangers, W_STRANGER)):
        if rows is not None and len(rows):
            parts.append((np.asarray(rows, np.float64), -1.0, w))
    scale = float(np.sqrt((parts[1][0] ** 2).mean()))
    X = np.concatenate([p[0] for p in parts]) / scale
    y = np.concatenate([np.full(len(p[0]), p[1]) for p in parts])
    w = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    g = logistic(X, y, w, ALPHA * len(ordinary) / 1000)
    med = float(np.median(pos @ g)) / scale
    if not med > 0:
        raise ValueError("the memory's anchors cannot be told from ordinary text")
    g = g * (T / med) / scale
    m = pos.mean(0)
    u = m / (m @ m)
    # positives the gate could not open are not levelled (forcing them would blow u up)
    s = pos_all @ g
    a, X = silu(s[s > T / 4]), pos_all[s > T / 4]
    A = a[:, None] * X
    r = 1 / np.linalg.norm(A, axis=1)    # each equation aᵢxᵢᵀu = 1 at unit scale, so the
    A = A * r[:, None]                   # ridge weighs on every positive alike
    u = u + A.T @ np.linalg.solve(A @ A.T + BETA * np.eye(len(A)), r - A @ u)
    return g, u, level(pos_all, g, u)


def shut(g, pos, closed, M, ridge=1e-6):
    """The gate g changed as little as ordinary text notices so that it stays exactly as it was
    at its own anchor inputs `pos` and is shut (gᵀc = −T/4: silu < 1e-4 of the open output) at
    the inputs `closed` (other memories' anchors it opens on, sleep's settle):

        min_Δ ΔᵀMΔ   s.t.   Δᵀp = 0 (p ∈ pos),   (g + Δ)ᵀc = −T/4 (c ∈ closed)
        Δ = M⁻¹Aᵀ(AM⁻¹Aᵀ)⁻¹ r,      A = [pos; closed],  r = [0; −T/4 − closed·g]

    with M = E[xxᵀ] over ordinary text: the least change of the gate's pre-activation there,
    in mean square. The level and u stay valid: the positives' gate values do not move.
    `ridge` (relative to AM⁻¹Aᵀ's mean diagonal) keeps nearly equal anchor rows solvable."""
    pos, closed = np.asarray(pos, np.float64), np.asarray(closed, np.float64)
    A = np.concatenate([pos, closed])
    r = np.concatenate([np.zeros(len(pos)), -T / 4 - closed @ g])
    MiA = np.linalg.solve(M, A.T)
    S = A @ MiA
    S += ridge * np.trace(S) / len(S) * np.eye(len(S))
    return g + MiA @ np.linalg.solve(S, r)


def level(X, g, u) -> float:
    """The unit's mean output at the inputs among X its gate opens on (gᵀx > T/4), as fit
    levels them."""
    X = np.asarray(X, np.float64)
    s = X @ g
    return float(output(X[s > T / 4], g, u).mean()) if (s > T / 4).any() else 0.0


def output(x, g, u):
    """The unit's activation silu(gᵀx)(uᵀx) at inputs x (n, d)."""
    x = np.asarray(x, np.float64)
    return silu(x @ g) * (x @ u)
