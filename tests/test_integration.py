"""End to end on the real default model: tell facts in chat, sleep, restart, ask."""
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from terminal import Terminal  # noqa: E402

pytestmark = pytest.mark.integration
BIN = os.path.join(os.path.dirname(sys.executable), "sleepllm")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One data directory for the module, so key statistics are computed once."""
    return tmp_path_factory.mktemp("home")


def chat(lines, memory, model, home, timeout=1800):
    env = dict(os.environ, SLEEPLLM_HOME=str(home))
    r = subprocess.run([BIN, "chat", "--model", model, "--memory", str(memory),
                        "--max-tokens", "48"], input="".join(l + "\n" for l in lines),
                       capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_told_in_chat_recalled_after_restart(default_model_path, home, tmp_path):
    mem = tmp_path / "mem"
    r = chat(["Hi there!", "My cat's name is Nimbus.", "What is 2 plus 2?",
              "My daughter's name is Ottilie.", "/sleep"], mem, default_model_path, home)
    assert r.stderr.count("learned") == 2, r.stderr
    assert "slept" in r.stderr
    facts = json.loads(subprocess.run(
        [BIN, "facts", "--memory", str(mem), "--json"], capture_output=True, text=True,
        env=dict(os.environ, SLEEPLLM_HOME=str(home)), check=True).stdout)
    assert sorted(f["fact"]["object"] for f in facts) == ["Nimbus", "Ottilie"]
    assert all(f["status"] == "consolidated" for f in facts)
    # a new process, an empty context: the answers come from the weights
    r = chat(["What is my cat's name?", "/clear", "What is my daughter's name?"],
             mem, default_model_path, home)
    answers = r.stdout.strip().split("\n")
    assert "Nimbus" in answers[0], r.stdout
    assert "Ottilie" in r.stdout.split("Nimbus", 1)[1], r.stdout


def test_journal_survives_without_sleep_and_forget_reverts(default_model_path, home, tmp_path):
    mem = tmp_path / "mem"
    chat(["My horse is named Thunderbolt."], mem, default_model_path, home)  # no /sleep
    r = chat(["What is my horse's name?"], mem, default_model_path, home)
    assert "Thunderbolt" in r.stdout, r.stdout
    chat(["/forget horse"], mem, default_model_path, home)
    r = chat(["What is my horse's name?"], mem, default_model_path, home)
    assert "Thunderbolt" not in r.stdout
    leftovers = [p for p in mem.rglob("*") if p.is_file() and b"Thunderbolt" in p.read_bytes()]
    assert leftovers == []


def test_eval_via_chat_reports_every_figure(default_model_path, home, tmp_path):
    """`sleepllm eval --via chat` on two facts of the eval schema: told through the REPL path,
    /sleep, probed in a new process; the JSON carries the names other tools read."""
    facts = [
        {"id": "t0", "kind": "self", "relation": "cat_name", "subject": "user",
         "object": "Pickle", "statement": "My cat's name is Pickle.", "prompt": "My cat's name is",
         "questions": ["What is my cat's name?"], "paraphrases": ["What's my cat called?"],
         "neighbors": ["The cat in the story is named"]},
        {"id": "t1", "kind": "other", "relation": "lives_in", "subject": "Aria",
         "object": "Ghent", "statement": "My friend Aria lives in Ghent.",
         "prompt": "Aria lives in", "questions": ["Where does Aria live?"],
         "paraphrases": ["Which city does Aria live in?"], "neighbors": ["Orla lives in"]},
    ]
    fact_file = tmp_path / "facts.jsonl"
    fact_file.write_text("".join(json.dumps(f) + "\n" for f in facts))
    out = tmp_path / "out.json"
    env = dict(os.environ, SLEEPLLM_HOME=str(home))
    r = subprocess.run([BIN, "eval", "--model", default_model_path, "--facts", str(fact_file),
                        "--via", "chat", "--memory", str(tmp_path / "mem"), "--json", str(out)],
                       capture_output=True, text=True, env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(out.read_text())
    for k in ("raw_recall", "chat_recall", "paraphrase_recall", "neighbors_unchanged",
              "general_unchanged", "extraction_precision", "extraction_recall"):
        assert 0.0 <= rep[k] <= 1.0, (k, rep[k])
    assert rep["n"] == 2 and rep["extraction_recall"] == 1.0
    assert rep["chat_recall"] >= 0.5, rep["facts"]
    assert rep["ppl_base"] > 0 and rep["ppl_after"] > 0 and rep["edit_seconds_median"] > 0
    assert 0 < rep["ack_seconds_median"] < rep["edit_seconds_median"]
    assert rep["bytes_per_fact"] > 0 and set(rep["before_sleep"]) >= {"raw_recall", "chat_recall"}
    assert rep["sleep"][0]["n_facts"] == 2
    wall = rep["wall_seconds"]
    assert all(wall[k] > 0 for k in ("baseline", "replies", "edits", "probes_before_sleep",
                                     "sleep", "new_process")), wall


def test_terminal_learns_while_the_user_types_and_kill9_loses_nothing(default_model_path, home,
                                                                    tmp_path):
    """In a real terminal a fact is noted at once and learned on a background thread while
    the prompt is live (the toolbar says so); the next question is answered without waiting
    for it (the Learner stops between two steps of its write) and the write goes on after.
    kill -9 while a noted fact is being learned: the next start learns it and answers from the
    weights."""
    import signal

    mem = tmp_path / "mem"
    env = dict(os.environ, SLEEPLLM_HOME=str(home), TERM="xterm")
    args = ["chat", "--model", default_model_path, "--memory", str(mem), "--max-tokens", "24"]
    t = Terminal([BIN, *args], env)
    t.read_until("you>")
    t.type("My cat's name is Nimbus.")
    seen = t.read_until("noted")
    after = t.read_until("learning [m0001]", timeout=60)[len(seen):]   # toolbar, prompt live
    assert "you>" in after
    asked = len(after) + len(seen)
    t.type("What is my cat's name?")
    t.type("/status")                      # read once the reply is done: still learning
    status = t.read_until("drowsiness:", since=asked, timeout=120)[asked:]
    assert "learning: [m0001]" in status and "still learning" not in status, status
    t.type("/facts")                       # a command: waits for the write, says so
    t.read_until("learned [m0001]", since=asked + len(status), timeout=600)
    t.type("My daughter's name is Ottilie.")
    t.read_until("noted [m0002]")
    t.read_until("learning [m0002]", timeout=60)
    os.kill(t.pid, signal.SIGKILL)                 # mid-edit: m0002 noted, not learned
    os.waitpid(t.pid, 0)
    os.close(t.fd)
    journal = [json.loads(l) for l in (mem / "journal.jsonl").read_text().splitlines()]
    assert [(e["op"], e["id"]) for e in journal][-1] == ("note", "m0002")
    r = chat(["What is my daughter's name?"], mem, default_model_path, home)
    assert "learned [m0002]" in r.stderr.replace("\n", " "), r.stderr
    assert "Ottilie" in r.stdout, r.stdout
