"""How much an eval's figures move with float round-off alone: run `sleepllm eval` with every
key and h_L the editor reads (memit.read, float64) multiplied by 1 + 1e-7·N(0, 1), seeded —
the size of float32 round-off, as another batch shape or CPU gives it. Sequential edits are
deterministic but not stable (each v* search stops at a loss threshold, each answer is an
argmax), so such a change at one write changes later ones; runs with different seeds sample
the spread of a figure, the bar a difference between two settings has to clear.

    .venv/bin/python scripts/spread.py SEED eval --facts FILE --via direct --n 50 --json OUT
"""
import sys

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
import numpy as np

from sleepllm import cli, memit

ROUND_OFF = 1e-7


def jittered(read, rng):
    def wrapped(*args, **kwargs):
        keys, resid = read(*args, **kwargs)
        j = lambda a: a * (1 + ROUND_OFF * rng.standard_normal(a.shape))
        return {l: j(k) for l, k in keys.items()}, None if resid is None else j(resid)
    return wrapped


def main():
    if len(sys.argv) < 3 or sys.argv[2] != "eval":
        sys.exit(__doc__)
    memit.read = jittered(memit.read, np.random.default_rng(int(sys.argv[1])))
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
