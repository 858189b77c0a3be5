#!/usr/bin/env python3
"""Crash tests with kill -9.

After an acknowledgement (default): `sleepllm chat` is told two facts and killed right after
the first "learned" line; every acknowledged fact must be in the folder's ledger on restart
(the ledger is what the next start loads into the weights).

While learning (--while-learning): `sleepllm chat` runs in a real terminal (a pty), is told a
fact and killed at a uniform random moment of the 12 s after its "noted" line — while the
background Learner writes the edit, or just after. The noted fact must be in the ledger on
restart (as noted or learned).

During sleep (--during-sleep): one memory folder is prepared once (a fact, /sleep → ckpt-1,
a second fact pending in the journal); each trial copies it, runs `sleepllm sleep` on the copy
and kills it at a uniform random moment of a full sleep's duration (measured first). Both
facts must survive, and the checkpoint the manifest names must verify.

With --restart the chat app is started after each crash and must load the memory and answer
/status; with --recall each surviving fact's chat question is asked in a new process, with an
empty context, and a trial passes only if every one is answered.

    .venv/bin/python scripts/kill9.py --trials 20 [--model default]
                                      [--during-sleep | --while-learning] [--restart] [--recall]
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sleepllm.probes import hit
from sleepllm.relations import Fact, questions

sys.path.insert(0, os.path.dirname(__file__))
from terminal import Terminal  # noqa: E402

BIN = str(Path(sys.executable).parent / "sleepllm")
STATEMENTS = ["My dog's name is Waffles.", "My cat's name is Nimbus.", "I live in Tromsø.",
              "My favorite color is turquoise.", "My friend Aria drives a Volvo.",
              "I work as a glassblower.", "My sister's name is Delphine."]


def ledger(memory, env) -> list[Fact]:
    out = subprocess.run([BIN, "facts", "--memory", str(memory), "--json"], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return [Fact.from_dict(f["fact"]) for f in json.loads(out.stdout)]


def chat(args, memory, env, text, max_tokens=8):
    return subprocess.run([BIN, "chat", "--model", args.model, "--memory", str(memory),
                           "--max-tokens", str(max_tokens)], input=text, capture_output=True,
                          text=True, env=env)


def kill_after_ack(k, args, env, memory) -> set:
    """Tell two facts; kill -9 right after the first acknowledgement. Returns what was acked."""
    lines = random.Random(k).sample(STATEMENTS, 2)
    p = subprocess.Popen([BIN, "chat", "--model", args.model, "--memory", str(memory),
                          "--max-tokens", "8"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env, text=True)
    p.stdin.write("".join(l + "\n" for l in lines))
    p.stdin.flush()
    acked = set()
    deadline = time.time() + 900
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        if "learned" in line:   # "learned [m0001]: your dog's name → Waffles 7.9 s"
            acked.add(re.sub(r"\s+[\d.]+ s$", "", line.rsplit("→", 1)[-1].split("(")[0].strip()))
            break
    p.send_signal(signal.SIGKILL)
    p.wait()
    return acked


def kill_while_learning(k, args, env, memory) -> tuple[set, float]:
    """Tell one fact in a terminal; kill -9 at a random moment after "noted". Returns what
    was acknowledged and when the kill came (seconds after the acknowledgement)."""
    rng = random.Random(k)
    statement = rng.choice(STATEMENTS)
    t = Terminal([BIN, "chat", "--model", args.model, "--memory", str(memory), "--max-tokens",
                  "8"], dict(env, TERM="xterm"))
    t.read_until("you>")
    since = len(t.seen)
    t.type(statement)
    seen = t.read_until(")", since=t.read_until("noted [", since=since).index("noted [", since))
    line = seen[seen.index("noted [", since):].split("\n")[0]
    at = rng.uniform(0, 12)
    time.sleep(at)
    os.kill(t.pid, signal.SIGKILL)
    os.waitpid(t.pid, 0)
    os.close(t.fd)
    return {line.rsplit("→", 1)[-1].split("(")[0].strip()}, at


def prepare_sleeper(args, env, root: Path) -> tuple[Path, set, float]:
    """A folder with ckpt-1 (one fact) and one pending fact; and how long a sleep of it takes."""
    base = root / "base"
    a, b = STATEMENTS[0], STATEMENTS[4]
    r = chat(args, base, env, f"{a}\n/sleep\n{b}\n")
    acked = {x.object for x in ledger(base, env)}
    if len(acked) != 2:
        raise RuntimeError(f"preparing the folder failed: {r.stderr[-500:]}")
    probe = root / "probe"
    shutil.copytree(base, probe)
    t = time.time()
    subprocess.run([BIN, "sleep", "--model", args.model, "--memory", str(probe)], env=env,
                   capture_output=True, check=True)
    return base, acked, time.time() - t


def kill_during_sleep(k, args, env, base, duration, memory) -> float:
    shutil.copytree(base, memory)
    at = random.Random(k).uniform(0, duration)
    p = subprocess.Popen([BIN, "sleep", "--model", args.model, "--memory", str(memory)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(at)
    p.send_signal(signal.SIGKILL)
    p.wait()
    return at


def recall(args, memory, env) -> dict:
    """{object: answered?} for every fact in the ledger, asked through chat in a new process."""
    out = {}
    for f in ledger(memory, env):
        r = chat(args, memory, env, questions(f)[0][0] + "\n", max_tokens=32)
        out[f.object] = hit(f.object, r.stdout)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--model", default="default")
    ap.add_argument("--during-sleep", action="store_true")
    ap.add_argument("--while-learning", action="store_true")
    ap.add_argument("--restart", action="store_true", help="start the chat app after each crash")
    ap.add_argument("--recall", action="store_true",
                    help="ask each surviving fact's chat question in a new process")
    args = ap.parse_args()
    env = dict(os.environ)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.during_sleep:
            base, acked, duration = prepare_sleeper(args, env, root)
            print(json.dumps({"prepared": sorted(acked), "full_sleep_seconds": round(duration, 1)},
                             ensure_ascii=False), flush=True)
        for k in range(args.trials):
            memory = root / f"t{k}"
            row = {"trial": k}
            if args.during_sleep:
                row["killed_at_s"] = round(kill_during_sleep(k, args, env, base, duration,
                                                             memory), 1)
            elif args.while_learning:
                acked, at = kill_while_learning(k, args, env, memory)
                row["killed_after_noted_s"] = round(at, 1)
            else:
                acked = kill_after_ack(k, args, env, memory)
            present = {f.object for f in ledger(memory, env)}
            row.update({"acknowledged": sorted(acked), "after_restart": sorted(present),
                        "lost": sorted(acked - present)})
            if args.restart:
                r = chat(args, memory, env, "/status\n")
                row["restart_ok"] = r.returncode == 0 and "memories:" in r.stderr
                row["warnings"] = [l for l in r.stderr.splitlines() if "warning" in l]
            if args.recall:
                row["recalled_in_chat"] = recall(args, memory, env)
            row["ok"] = not row["lost"] and row.get("restart_ok", True) is not False \
                and all(row.get("recalled_in_chat", {}).values())
            failures += not row["ok"]
            print(json.dumps(row, ensure_ascii=False), flush=True)
            shutil.rmtree(memory, ignore_errors=True)
    print(f"{args.trials - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
