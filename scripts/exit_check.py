"""How often a chat that learned a fact in the background exits cleanly: tell one fact to
`sleepllm chat` (piped, a fresh memory folder each time), let it learn, reach end of input,
and count the exit codes. A non-zero code here was MLX tearing down the learner thread's
streams at exit ("terminate called without an active exception").

    .venv/bin/python scripts/exit_check.py [RUNS]
"""
import collections
import os
import subprocess
import sys
import tempfile

BIN = os.path.join(os.path.dirname(sys.executable), "sleepllm")


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    codes = collections.Counter()
    for i in range(runs):
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([BIN, "chat", "--memory", os.path.join(d, "m"), "--max-tokens", "8"],
                               input="My horse is named Thunderbolt.\n", capture_output=True,
                               text=True, timeout=600)
        learned = "learned" in r.stderr
        last = (r.stderr.strip().splitlines() or [""])[-1]
        print(f"run {i + 1}: exit {r.returncode}, learned {learned}, last line: {last[:80]}",
              flush=True)
        codes[r.returncode] += 1
    print("exit codes:", dict(codes))


if __name__ == "__main__":
    main()
