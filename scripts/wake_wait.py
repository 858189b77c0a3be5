"""How long a user waits in the chat when telling facts, in a real terminal.

    scripts/wake_wait.py [N] [THINK] [--facts FILE] [--python PY] [--src DIR]

Tells the first N statements of a fact file (default: the dev set, N 8) to `sleepllm chat` on
a pseudo-terminal, fresh memory folder, and after each prompt comes back waits THINK seconds
(default 6: reading the reply and typing the next message) before typing the next one. Per
message it prints the seconds from Enter until the prompt is back (the reply, and whatever
learning the user has to wait for), then how long `/facts` waits for the last edit.
`--src DIR` runs the sleepllm found in DIR (another checkout, e.g. an older commit) with the
interpreter `--python`, for a side-by-side comparison.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from terminal import Terminal  # noqa: E402

a = argparse.ArgumentParser()
a.add_argument("n", nargs="?", type=int, default=8)
a.add_argument("think", nargs="?", type=float, default=6.0)
a.add_argument("--facts", default=str(Path(__file__).parent.parent.parent / "shared" / "eval" /
                                      "dev_facts.jsonl"))
a.add_argument("--python", default=sys.executable)
a.add_argument("--src", default=str(Path(__file__).resolve().parent.parent))
args = a.parse_args()
facts = [json.loads(l) for l in Path(args.facts).read_text().splitlines() if l.strip()][: args.n]
mem = tempfile.mkdtemp(prefix="wake-wait-")
env = dict(os.environ, TERM="xterm", PYTHONPATH=args.src)
t = Terminal([args.python, "-m", "sleepllm", "chat", "--memory", mem, "--max-tokens", "24"], env,
             cwd=args.src)
t.read_until("you>")
waits = []


def tell(text, marks):
    """Type a message; seconds until the prompt is back after one of `marks` appeared."""
    since = len(t.seen)
    t0 = time.perf_counter()
    t.type(text)
    seen = t.read_until("\n", since=since + len(text))
    at = min((seen.find(m, since) for m in marks if m in seen[since:]), default=-1)
    while at < 0:
        seen = t.read_until("\n", since=len(seen))
        at = min((seen.find(m, since) for m in marks if m in seen[since:]), default=-1)
    t.read_until("you>", since=at)
    return time.perf_counter() - t0


for f in facts:
    w = tell(f["statement"], ("noted [", "learned ["))
    waits.append(w)
    print(f"{w:6.1f} s  {f['statement']}", flush=True)
    time.sleep(args.think)
q = tell("/facts", ("memories in",))
print(f"{q:6.1f} s  /facts (lists the memories once every fact is learned)")
print(f"median wait per statement {statistics.median(waits):.1f} s, total {sum(waits):.1f} s "
      f"over {len(waits)} statements, think time {args.think:.0f} s; src {args.src}")
if os.environ.get("WAKE_WAIT_DUMP"):
    Path(os.environ["WAKE_WAIT_DUMP"]).write_text(t.seen)
os.kill(t.pid, 9)
shutil.rmtree(mem, ignore_errors=True)
