"""What the extractor makes of each line of a text file: the facts, or nothing.

    .venv/bin/python scripts/extract_check.py FILE [FILE ...]

Prints one line per statement and, per file, how many statements gave at least one fact.
docs/editing.md (twelfth round) counts docs/results/wordings_twelfth.txt (statements that
should give a fact) and tests/data/hostile.txt (statements that must not) with it.
"""
import sys

import sleepllm  # noqa: F401  (loads the fast BLAS before mlx)
from sleepllm.extract import extract
from sleepllm.relations import describe


def main():
    for path in sys.argv[1:]:
        lines = [l.rstrip("\n") for l in open(path, encoding="utf-8")]
        lines = [l for l in lines if l.strip() and not l.startswith("#")]
        hits = 0
        for line in lines:
            facts = extract(line)
            hits += bool(facts)
            shown = "; ".join(f"{f.subject}/{f.relation}: {describe(f)}" for f in facts) or "-"
            print(f"{line[:60]:60s}  {shown}")
        print(f"== {path}: {hits} of {len(lines)} statements gave a fact\n")


if __name__ == "__main__":
    main()
