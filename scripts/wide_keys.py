"""What the editor costs at a large model's key width, without the large model.

Llama-3.2-3B's MLP is 8192 wide: every key the editor reads, and every d_k × d_k matrix it
keeps (C, C⁻¹), is that wide. This builds a random Llama that is narrow everywhere else
(hidden 128, 10 layers) but has that MLP width, and times what depends on d_k: the key
statistics, four wake writes (v* search cut to 5 steps: on a narrow model it is negligible)
and a sleep; with peak RSS. The model is random, so nothing is recalled: only cost is measured.

    scripts/wide_keys.py [D_K]            (default 8192; SLEEPLLM_HOME picks where the
                                           statistics are cached — reuse it to skip them)
"""
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import sleepllm  # noqa: E402,F401  (fast BLAS before mlx)

os.environ.setdefault("SLEEPLLM_HOME", tempfile.mkdtemp(prefix="wide-keys-"))

from conftest import make_tiny_model_dir  # noqa: E402
from mlx_lm import load  # noqa: E402

from sleepllm import sleep  # noqa: E402
from sleepllm.config import load_config  # noqa: E402
from sleepllm.memory import Memory  # noqa: E402
from sleepllm.relations import Fact  # noqa: E402


def peak_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main():
    d_k = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
    home = Path(os.environ["SLEEPLLM_HOME"])
    folder = make_tiny_model_dir(home / f"model_{d_k}", hidden=128, layers=10, intermediate=d_k)
    model, tok = load(str(folder))
    cfg = load_config(None, {"editor.layers": [4, 5, 6, 7, 8], "editor.v_steps": 5})
    mem = Memory(Path(tempfile.mkdtemp()) / "m", model, tok, cfg, "wide")
    t = time.perf_counter()
    mem.editor.load_stats()
    print(f"d_k {d_k}: statistics (C, C⁻¹) {time.perf_counter() - t:.1f} s, "
          f"peak RSS {peak_gb():.2f} GB", flush=True)
    for fact in [Fact("user", "name", "Rex", "dog"), Fact("Aria", "lives_in", "Ghent"),
                 Fact("user", "favorite", "teal", "color"), Fact("Bo", "works_as", "baker")]:
        t = time.perf_counter()
        mem.learn(fact)
        print(f"write {time.perf_counter() - t:.1f} s, peak RSS {peak_gb():.2f} GB", flush=True)
    t = time.perf_counter()
    report = sleep.run(mem)
    phases = ", ".join(f"{k} {v:.1f}" for k, v in report["phases"].items())
    print(f"sleep {time.perf_counter() - t:.1f} s ({phases}), peak RSS {peak_gb():.2f} GB",
          flush=True)


if __name__ == "__main__":
    main()
