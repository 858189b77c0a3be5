#!/usr/bin/env python3
"""Crash test: kill -9 sleepllm right after it acknowledges a fact (or, with --during-sleep, at
a random moment of a second /sleep: one fact, /sleep, another fact, /sleep, kill), restart, and
check that every acknowledged fact is still there (in the ledger, which is what the next start
loads into the weights). With --restart the chat app itself is started after each crash and
must load the memory and answer /status; with --recall it is also asked each acknowledged
fact's chat question in a new process, with an empty context.

    .venv/bin/python scripts/kill9.py --trials 20 [--model PATH] [--during-sleep] [--restart]
                                      [--recall]
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sleepllm.probes import hit
from sleepllm.relations import Fact, questions

BIN = str(Path(sys.executable).parent / "sleepllm")
STATEMENTS = ["My dog's name is Waffles.", "My cat's name is Nimbus.", "I live in Tromsø.",
              "My favorite color is turquoise.", "My friend Aria drives a Volvo.",
              "I work as a glassblower.", "My sister's name is Delphine."]


def facts_json(memory, env):
    out = subprocess.run([BIN, "facts", "--memory", str(memory), "--json"], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return {f["fact"]["object"] for f in json.loads(out.stdout)}


def trial(k, args, env, memory):
    """One crash: returns (acknowledged objects, objects present after restart)."""
    rng = random.Random(k)
    lines = rng.sample(STATEMENTS, 2)
    if args.during_sleep:
        lines = [lines[0], "/sleep", lines[1], "/sleep"]
    p = subprocess.Popen([BIN, "chat", "--model", args.model, "--memory", str(memory),
                          "--max-tokens", "8"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env, text=True)
    p.stdin.write("".join(l + "\n" for l in lines))
    p.stdin.flush()
    acked, err = set(), ""
    deadline = time.time() + 900
    kill_at = None
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        err += line
        if "learned" in line:
            acked.add(line.rsplit("→", 1)[-1].split("(")[0].strip())
            if not args.during_sleep and len(acked) == 1:
                break                                  # kill right after the first ack
            if args.during_sleep and len(acked) == 2:
                kill_at = time.time() + rng.uniform(0, args.sleep_window)
        if kill_at and time.time() >= kill_at:
            break
    if kill_at:
        time.sleep(max(0.0, kill_at - time.time()))
    p.send_signal(signal.SIGKILL)
    p.wait()
    present = facts_json(memory, env)
    return acked, present


def recall(memory, env, args):
    """{object: answered?} for every fact in the ledger, asked through chat in a new process."""
    out = subprocess.run([BIN, "facts", "--memory", str(memory), "--json"], env=env,
                         capture_output=True, text=True, check=True)
    facts = [Fact.from_dict(f["fact"]) for f in json.loads(out.stdout)]
    answers = {}
    for f in facts:
        q = questions(f)[0][0]
        r = subprocess.run([BIN, "chat", "--model", args.model, "--memory", str(memory),
                            "--max-tokens", "32"], input=q + "\n", capture_output=True,
                           text=True, env=env)
        answers[f.object] = hit(f.object, r.stdout)
    return answers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--model", default="default")
    ap.add_argument("--during-sleep", action="store_true")
    ap.add_argument("--sleep-window", type=float, default=60.0,
                    help="kill at a uniform random moment this many seconds into /sleep")
    ap.add_argument("--restart", action="store_true", help="start the chat app after each crash")
    ap.add_argument("--recall", action="store_true",
                    help="ask each surviving fact's chat question in a new process")
    args = ap.parse_args()
    env = dict(os.environ)
    failures = 0
    for k in range(args.trials):
        with tempfile.TemporaryDirectory() as tmp:
            memory = Path(tmp) / "mem"
            acked, present = trial(k, args, env, memory)
            lost = acked - present
            restarted = None
            if args.restart:
                r = subprocess.run([BIN, "chat", "--model", args.model, "--memory", str(memory)],
                                   input="/status\n", capture_output=True, text=True, env=env)
                restarted = r.returncode == 0 and "memories:" in r.stderr
            answered = recall(memory, env, args) if args.recall else None
            ok = not lost and restarted is not False
            failures += not ok
            print(json.dumps({"trial": k, "acknowledged": sorted(acked),
                              "after_restart": sorted(present), "lost": sorted(lost),
                              "restart_ok": restarted, "recalled_in_chat": answered,
                              "ok": ok}, ensure_ascii=False), flush=True)
    print(f"{args.trials - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
