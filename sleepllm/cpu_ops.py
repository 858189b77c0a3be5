"""A vectorisable exp, and the SwiGLU of mlx-lm's MLPs with it, for MLX's CPU backend on x86.

MLX's x86 CPU build has no SIMD code for transcendental functions: `mx.exp` runs at ~85 M
elements/s on this 2-core box (a multiply-add at ~2.5 G/s), so in a batch of prompts the SiLU
of every MLP takes as long as its three matmuls (docs/benchmarks.md). Here exp is written with
operations that do vectorise (multiply, add, floor, an integer shift) and fused by
`mx.compile` into one loop:

    exp(x) = 2ⁿ · e^r,   n = round(x / ln 2),   r = x − n·ln 2 ∈ [−ln2/2, ln2/2]
    e^r    ≈ 1 + r + r²·P(r)              (Cephes expf's degree-5 P; ≤ 1 ulp on [−87, 88])
    2ⁿ     = the float whose exponent bits are n + 127

    swiglu(g, u) = silu(g) ⊙ u = g ⊙ u / (1 + e^{−g}),
    ∂/∂g = u ⊙ σ(g) (1 + g (1 − σ(g))),  ∂/∂u = silu(g)                 (σ = 1 / (1 + e^{−g}))

computed in float32 whatever the model's dtype. It is more accurate than MLX's CPU exp
(measured: 8·10⁻⁸ against 3.9·10⁻⁶ max relative error on [−87, 88]). `install(model)` puts it in
place of mlx-lm's `swiglu` in the model's module on an x86 CPU; elsewhere (Metal, Apple's
CPU) MLX's own kernel stays. SLEEPLLM_MLX_OPS=1 keeps MLX's (for side-by-side benchmarks).
"""
import os
import platform
import sys

import mlx.core as mx
from mlx_lm.models.activations import swiglu as mlx_swiglu

LOG2E = 1.4426950408889634
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4     # ln 2 split so n·LN2_HI is exact
EXP_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
         1.6666665459e-1, 5.0000001201e-1)
EXP_MIN, EXP_MAX = -87.0, 88.0                   # e^x underflows to 0 below, clamps above


def _exp(x):
    """e^x for float32 x, elementwise, from vectorisable operations only."""
    xc = mx.clip(x, EXP_MIN, EXP_MAX)
    n = mx.floor(xc * LOG2E + 0.5)
    r = xc - n * LN2_HI - n * LN2_LO
    p = EXP_P[0]
    for c in EXP_P[1:]:
        p = p * r + c
    p = p * r * r + r + 1.0
    two_n = mx.left_shift(n.astype(mx.int32) + 127, 23).view(mx.float32)
    return mx.where(x < EXP_MIN, 0.0, p * two_n)


exp = mx.compile(_exp)


@mx.compile
def _swiglu(g, u):
    return g * u / (1.0 + _exp(-g))


@mx.compile
def _swiglu_grads(g, u, c):
    s = 1.0 / (1.0 + _exp(-g))                   # sigmoid(g); silu'(g) = s (1 + g (1 − s))
    return c * u * s * (1.0 + g * (1.0 - s)), c * g * s


SMALL = 8192   # fewer elements than this (one token's MLP while generating): MLX's kernel


def swiglu(g, u):
    """silu(g) ⊙ u, as mlx-lm's `activations.swiglu`: vectorised for a batch of tokens; for
    one token's few thousand values the call overhead would outweigh it, so MLX's."""
    if g.size < SMALL:
        return mlx_swiglu(g, u)
    return _swiglu_vec(g, u)


@mx.custom_function
def _swiglu_vec(g, u):
    dt = g.dtype
    return _swiglu(g.astype(mx.float32), u.astype(mx.float32)).astype(dt)


@_swiglu_vec.vjp
def _swiglu_vjp(primals, cotangent, output):
    g, u = primals
    dg, du = _swiglu_grads(g.astype(mx.float32), u.astype(mx.float32),
                           cotangent.astype(mx.float32))
    return dg.astype(g.dtype), du.astype(u.dtype)


def wanted() -> bool:
    """On an x86 CPU (where MLX's exp is scalar), unless SLEEPLLM_MLX_OPS=1, and only if
    `mx.compile` works here (it builds its kernels with the system's C++ compiler)."""
    if (os.environ.get("SLEEPLLM_MLX_OPS") == "1" or mx.default_device() != mx.cpu
            or platform.machine().lower() not in ("x86_64", "amd64")):
        return False
    try:
        return bool(mx.allclose(exp(mx.zeros(4)), mx.ones(4)))
    except Exception:   # no working compiler: MLX's kernels stay
        return False


def install(model, on=None) -> bool:
    """Use `swiglu` in `model`'s mlx-lm module (on=None: when `wanted()`); on=False puts
    mlx-lm's back. Returns whether it is in use. A module without `swiglu` is left alone."""
    mod = sys.modules[type(model).__module__]
    if not hasattr(mod, "swiglu"):
        return False
    if not hasattr(mod, "_mlx_swiglu"):
        mod._mlx_swiglu = mod.swiglu
    mod.swiglu = swiglu if (wanted() if on is None else on) else mod._mlx_swiglu
    return active(model)


def active(model) -> bool:
    return getattr(sys.modules[type(model).__module__], "swiglu", None) is swiglu
