"""The chat REPL (wake): prompt-toolkit on a terminal, line-by-line script mode on a pipe.

Each user message is answered first (streamed), then the extractor looks at that message
only — never at the assistant's words. Every fact found is journalled (fsync'd) before
"noted" is printed, and written into the weights by the Learner, on a background thread (a
wake edit takes seconds on a CPU). A reply does not wait for it: the Learner stops between two
steps of its write, the reply runs, the write goes on (`Learner.paused`; until then the fact
is in the conversation itself). Commands and quitting wait for the Learner to finish. MLX never
runs on two threads at once. Nothing about memories ever enters the conversation sent to the
model.
"""
import os
import sys
import threading
import time
from contextlib import contextmanager, nullcontext

import mlx.core as mx
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from sleepllm import chat, relations
from sleepllm.extract import extract, person_after

COMMANDS = {
    "/help": "show this help",
    "/facts": "list memories: id, text, status, when learned, last audit",
    "/forget": "/forget <id or words>: remove a memory (exact revert of its edit)",
    "/undo": "forget the last learned fact",
    "/sleep": "consolidate: audit, refresh, prune, checkpoint",
    "/nap": "quick audit of every memory, no changes",
    "/status": "model, BLAS, memory counts, drowsiness, checkpoint",
    "/clear": "clear the conversation (memories stay)",
    "/speed": "show tokens/s after each reply (toggle)",
    "/quit": "quit (Ctrl-D also quits)",
}


class Session:
    """One chat: the loaded model, the conversation, the memory and the settings."""

    def __init__(self, model, tokenizer, model_path, cfg, context_window, memory=None):
        self.model, self.tokenizer, self.model_path, self.cfg = model, tokenizer, model_path, cfg
        self.memory = memory
        self.conv = chat.Conversation(system_prompt=cfg["system_prompt"])
        self.budget = min(int(cfg["max_context"]), context_window)
        self.show_speed = False
        self.last_speed = 0.0
        self.learned: list[str] = []    # ids noted this session, for /undo
        self.learner = Learner(memory) if memory else None
        self.person = None   # whom the user's last message was about ("she" in the next one)

    def prompt_tokens(self) -> list[int]:
        """The tokens fed to the model for the next reply: the conversation only."""
        return chat.fit(self.tokenizer, self.conv, self.budget - int(self.cfg["max_tokens"]))

    def reply(self, text: str, out) -> str:
        """Send a user message, stream the reply to `out(str)`, return it.

        KeyboardInterrupt stops the reply; what was generated so far is kept."""
        self.conv.messages.append({"role": "user", "content": text})
        try:
            tokens = self.prompt_tokens()
        except ValueError:
            self.conv.messages.pop()
            raise
        pieces, last = [], None
        try:
            with self.learner.paused() if self.learner else nullcontext():
                for r in chat.generate(self.model, self.tokenizer, tokens,
                                       int(self.cfg["max_tokens"]), self.cfg["temp"],
                                       int(self.cfg["no_repeat_ngram"])):
                    pieces.append(r.text)
                    out(r.text)
                    last = r
        except KeyboardInterrupt:
            out(" [stopped]")
        answer = "".join(pieces).strip()
        self.conv.messages.append({"role": "assistant", "content": answer})
        self.last_speed = last.generation_tps if last else 0.0
        return answer

    def learn_from(self, text: str, console, wait=True) -> list[str]:
        """Extract facts from a user message, note each one and start learning them; with
        `wait`, return only when they are written. Returns the noted ids."""
        if self.memory is None:
            return []
        ids = []
        facts = extract(text, self.person)
        self.person = person_after(facts)
        for fact in facts:
            fid, new = self.memory.note(fact, text)
            if fid in ids:
                continue
            if not new:
                console.print(f"[dim]already known \\[{fid}]: "
                              f"{escape(relations.describe(fact))}[/dim]")
                continue
            if not wait:
                console.print(f"[cyan]noted[/cyan] \\[{fid}]: {escape(relations.describe(fact))}"
                              " [dim](learning it while you type)[/dim]")
            ids.append(fid)
        self.learned += ids
        self.learner.start()
        if wait:
            self.settle(console)
        return ids

    def settle(self, console) -> None:
        """Wait for the Learner to finish (a command is about to use the model or the memory)
        and report what it did. Ctrl-C stops the waiting, not the learning: KeyboardInterrupt
        is raised."""
        if self.learner is None:
            return
        while self.learner.busy():
            with console.status(escape(f"still learning {self.learner.doing()}")):
                while self.learner.busy():
                    self.learner.thread.join(0.1)
        self.report(console)

    def report(self, console) -> None:
        """Say what the Learner learned (or could not) since the last report; no waiting."""
        if self.learner is None:
            return
        for r in self.learner.take():
            if "error" in r:
                console.print(f"[red]could not learn[/red] \\[{r['id']}]: {escape(r['text'])}: "
                              f"{escape(str(r['error']))} [dim](it stays noted in the journal "
                              "and is tried again after your next message)[/dim]")
                continue
            note = f" (replaces {r['superseded']})" if r["superseded"] else ""
            console.print(f"[green]learned[/green] \\[{r['id']}]: {escape(r['text'])}"
                          f"{escape(note)} [dim]{r['seconds']:.1f} s[/dim]")

    def drowsiness(self) -> float:
        if self.memory is None:
            return 0.0
        c = self.memory.counts()
        return (c["pending"] + c["noted"]) / max(1, int(self.cfg["wake_capacity"]))


class Learner:
    """Writes the memory's noted facts into the weights, oldest first, on a background thread.
    The model is used by one thread at a time: the main thread uses it only inside `paused()`
    (a reply: the Learner stops at its next pause point, between two steps of a write, and goes
    on after) or when the Learner is not `busy()` (Session.settle waits for that)."""

    def __init__(self, memory):
        self.memory = memory
        self.thread: threading.Thread | None = None
        self.stop = False          # set to finish the current fact and leave the rest noted
        self.current: dict | None = None
        self._done: list[dict] = []
        self._lock = threading.Lock()
        self._turn = threading.Condition()
        self._running = False      # a thread will take facts noted from now on
        self._computing = 0        # learner threads that may be running MLX now
        self._wanted = False       # the main thread waits for the model

    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self):
        """Learn the noted facts, unless a thread is already at it (it takes them too)."""
        with self._turn:
            if not self.memory.queue or self._running:
                return
            self._running, self.stop = True, False
            self._computing += 1
            before = self.thread
            self.thread = threading.Thread(target=self._run, args=(before,), name="learner",
                                           daemon=True)
            self.thread.start()

    @contextmanager
    def paused(self):
        """The model is the caller's inside: the Learner stops at its next pause point (the
        end of an Adam step or of a write's phase: seconds at most) and goes on after."""
        with self._turn:
            self._wanted = True
            try:
                self._turn.wait_for(lambda: self._computing == 0)
            except BaseException:            # Ctrl-C while waiting: the Learner goes on
                self._wanted = False
                self._turn.notify_all()
                raise
        try:
            yield
        finally:
            with self._turn:
                self._wanted = False
                self._turn.notify_all()

    def _pause(self):
        """On the Learner's thread, with nothing left to compute: wait while the main thread
        has the model."""
        with self._turn:
            if not self._wanted:
                return
            self._computing -= 1
            self._turn.notify_all()
            self._turn.wait_for(lambda: not self._wanted)
            self._computing += 1

    def doing(self) -> str:
        queue = list(self.memory.queue)        # a copy: the Learner pops from it
        e, n = self.current or (queue[0] if queue else None), len(queue)
        if e is None:
            return "nothing noted"
        more = f" ({n - 1} more noted)" if n > 1 else ""
        return f"[{e['id']}]: {e['text']}{more}"

    def take(self) -> list[dict]:
        """What was learned (or failed) since the last call; Session.settle prints it."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def finished(self) -> str:
        """The ids learned and not yet reported, for the toolbar."""
        with self._lock:
            return ", ".join(r["id"] for r in self._done if "error" not in r)

    def _run(self, before: threading.Thread | None):
        if before is not None:
            before.join()                   # its last MLX call (clear_streams) is done
        editor = self.memory.editor
        editor.pause = self._pause
        try:
            while True:
                self._pause()
                with self._turn:
                    if not self.memory.queue or self.stop:
                        self._running = False       # start() starts another thread now
                        break
                e = self.current = self.memory.queue[0]
                r = {"id": e["id"], "text": e["text"]}
                t0 = time.perf_counter()
                try:
                    fid, sup = self.memory.learn_next()
                    r.update(id=fid, superseded=sup, seconds=time.perf_counter() - t0)
                except Exception as err:   # reported by settle; the note stays in the journal
                    r["error"] = err
                with self._lock:
                    self._done.append(r)
                if "error" in r:
                    break
        finally:
            self.current = None
            editor.pause = lambda: None
            # MLX's streams of this thread, destroyed by the thread that made them: left to
            # process exit, their teardown can abort it ("terminate called without an active
            # exception"). Everything this thread computed was evaluated (Editor._refresh).
            mx.clear_streams()
            with self._turn:
                if self.thread is threading.current_thread():   # no newer thread started
                    self._running = False
                self._computing -= 1
                self._turn.notify_all()


def drowsy_label(d: float) -> str:
    return "awake" if d < 0.5 else "drowsy" if d < 1.0 else "sleepy"


def _need_memory(session, console) -> bool:
    if session.memory is None:
        console.print("[red]no memory loaded[/red]")
        return False
    return True


def show_facts(folder, records, console):
    t = Table(title=f"memories in {folder}")
    for c in ("id", "memory", "status", "learned", "last audit", "wordings answered"):
        t.add_column(c)
    for r in records.values():
        audit = r.get("last_audit") or {}
        # of every wording the app knows of it, when last asked (its write or a rehearsal)
        w = r.get("wordings")
        t.add_row(r["id"], escape(r["text"]), r["status"], r["learned_at"].replace("T", " ")[:16],
                  f"{audit.get('status', '')} {audit.get('time', '')[:16].replace('T', ' ')}",
                  f"{w['of'] - len(w['missed'])}/{w['of']}" if w else "")
    console.print(t)


def do_sleep(session, console):
    from rich.progress import Progress

    from sleepllm import sleep

    session.settle(console)
    with Progress(console=console, transient=True) as bar:
        tasks = {}

        def progress(phase, done, total):
            if phase not in tasks:
                for t in tasks.values():       # a new phase: the earlier ones are finished
                    bar.update(t, completed=1, total=1)
                tasks[phase] = bar.add_task(phase, total=total or 1)
            bar.update(tasks[phase], completed=done, total=total or 1)

        t0 = time.perf_counter()
        report = sleep.run(session.memory, progress)
    print_sleep_report(report, console, time.perf_counter() - t0)
    return report


def print_sleep_report(report, console, seconds):
    c = report["counts"]
    console.print(f"[bold]slept[/bold] {seconds:.0f} s: {c['healthy']} healthy, {c['degraded']} "
                  f"degraded, {c['lost']} lost; consolidated {len(report['consolidated'])}; "
                  f"refreshed {len(report['refreshed'])}; "
                  f"pruned {len(report['pruned'])}; checkpoint {report['checkpoint']}; "
                  f"perplexity {report['ppl_before']:.2f} → {report['ppl_after']:.2f}")
    cons = report.get("consolidation")
    if cons and "skipped" in cons:
        console.print(f"  consolidation not done: {cons['skipped']}")
    elif cons and not cons["kept"]:
        console.print(f"  consolidation recalled less than the wake edits "
                      f"({cons['joint_score']:.1f} < {cons['wake_score']:.1f}): wake edits kept")
    for p in report["pruned"]:
        console.print(f"  pruned \\[{p['id']}] {escape(p['text'])}: {p['why']}")
    kept = [r for r in report.get("rehearsed", []) if r["kept"]]
    if report.get("rehearsed"):
        console.print(f"  rehearsed {len(report['rehearsed'])} memories' wordings: "
                      f"{sum(r['before'] for r in report['rehearsed'])} → "
                      f"{sum(r['after'] for r in report['rehearsed'])} of "
                      f"{sum(r['of'] for r in report['rehearsed'])} answered "
                      f"({len(kept)} memories changed)")
    for fid in report["unrestored"]:
        console.print(f"  [yellow]could not restore[/yellow] \\[{fid}]")
    for what in report.get("skipped_for_time", []):
        if what != "consolidate":          # said above, with the consolidation
            console.print(f"  not done within sleep.seconds: {what}")
    if report["rolled_back"]:
        console.print(f"  [yellow]rolled back:[/yellow] {report['rolled_back']}")
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in report["phases"].items())
    console.print(f"  [dim]{phases}[/dim]")


def handle_command(session, line: str, console) -> bool:
    """Run a slash command. Returns False when the REPL should exit."""
    from sleepllm.blas import blas_in_use

    cmd, _, arg = line.strip().partition(" ")
    cmd, arg = cmd.lower(), arg.strip()
    mem = session.memory
    if cmd in ("/quit", "/exit"):
        return False
    if cmd not in ("/help", "/clear", "/speed", "/status"):
        session.settle(console)      # the commands below use the model or the memory files
    if cmd == "/help":
        for name, text in COMMANDS.items():
            console.print(f"  [bold]{name:<8}[/bold] {text}")
    elif cmd == "/clear":
        session.conv.clear()
        session.person = None
        console.print("[dim]conversation cleared (memories stay)[/dim]")
    elif cmd == "/speed":
        session.show_speed = not session.show_speed
        console.print(f"[dim]speed display {'on' if session.show_speed else 'off'}[/dim]")
    elif cmd == "/status":
        lines = [f"model: {session.model_path}", f"BLAS: {blas_in_use()}",
                 f"context: {len(session.conv.messages)} messages, budget {session.budget} "
                 f"tokens, {session.conv.dropped} old turns dropped"]
        if mem:
            c = mem.counts()
            d = session.drowsiness()
            lines += [f"memory: {mem.folder}", f"memories: {c['noted']} noted (learning: "
                      f"{session.learner.doing() if session.learner.busy() else 'no'}), "
                      f"{c['pending']} pending, "
                      f"{c['consolidated']} consolidated, {c['degraded']} degraded",
                      f"drowsiness: {d:.2f} ({drowsy_label(d)})",
                      f"checkpoint: {mem.checkpoint_name or 'none yet'}"]
        console.print(escape("\n".join(lines)))
    elif cmd == "/facts":
        if _need_memory(session, console):
            show_facts(mem.folder, mem.records, console)
    elif cmd in ("/forget", "/undo"):
        if not _need_memory(session, console):
            return True
        if cmd == "/undo":
            live = [i for i in session.learned if i in mem.records]
            if not live:
                console.print("nothing learned in this session to undo")
                return True
            ids = [live[-1]]
        else:
            if not arg:
                console.print("usage: /forget <id or words>")
                return True
            ids = mem.find(arg)
            if len(ids) != 1:
                which = "no memory matches" if not ids else "several memories match"
                listed = ": " + ", ".join(ids) if ids else ""
                console.print(f"{which} {arg!r}{listed}; use an id from /facts")
                return True
        rec = mem.forget(ids[0])
        console.print(f"[yellow]forgot[/yellow] \\[{rec['id']}]: {escape(rec['text'])}")
    elif cmd == "/sleep":
        if _need_memory(session, console):
            do_sleep(session, console)
    elif cmd == "/nap":
        if _need_memory(session, console):
            from sleepllm import probes

            res = probes.audit(session.model, session.tokenizer, mem.active(),
                               session.cfg["system_prompt"])
            for fid, r in res.items():
                console.print(f"  \\[{fid}] {escape(mem.records[fid]['text'])}: {probes.status(r)}")
    else:
        console.print(f"[red]unknown command {cmd}[/red]; /help lists the commands")
    return True


def _after_message(session, line, console, wait=True):
    session.learn_from(line, console, wait)
    d = session.drowsiness()
    if d >= 1.0:
        if session.cfg["auto_sleep"]:
            console.print("[dim]drowsy: sleeping now (auto_sleep)[/dim]")
            do_sleep(session, console)
        else:
            console.print("[dim]I'm getting sleepy: /sleep consolidates what I learned[/dim]")


def run_script(session, lines, console) -> int:
    """Script mode: one message or command per input line; replies printed plainly. Each
    message's facts are learned before the next line is read."""
    _resume(session, console)
    session.settle(console)
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        if line.startswith("/"):
            if not handle_command(session, line, console):
                break
            continue
        try:
            session.reply(line, lambda s: (sys.stdout.write(s), sys.stdout.flush()))
        except ValueError as e:
            console.print(f"[red]{e}[/red]")
            continue
        sys.stdout.write("\n")
        sys.stdout.flush()
        _after_message(session, line, console)
    session.settle(console)
    return 0


def _resume(session, console):
    """Facts noted before a quit or crash but not yet learned are learned now."""
    if session.memory and session.memory.queue:
        console.print(f"[dim]learning {len(session.memory.queue)} facts noted last time[/dim]")
        session.learner.start()


def _quit(session, console, prompt) -> None:
    """Finish the fact being learned (the rest stay noted), then offer to sleep."""
    mem = session.memory
    if mem is None:
        return
    if session.learner.busy():
        session.learner.stop = True
        if len(mem.queue) > 1:
            console.print(f"[dim]{len(mem.queue) - 1} noted facts are learned on the next start"
                          "[/dim]")
    try:
        session.settle(console)
    except KeyboardInterrupt:   # the edit in progress is lost, its fact is not: still noted
        console.print(f"[dim]quitting; {len(mem.queue)} noted facts are learned on the next "
                      "start[/dim]")
        sys.stdout.flush()
        os._exit(0)
    c = mem.counts()
    if c["pending"] and not c["noted"]:
        try:
            ans = prompt.prompt(f"{c['pending']} memories are not consolidated yet (they are "
                                "safe in the journal). Sleep now? [y/N] ")
        except (EOFError, KeyboardInterrupt):
            ans = ""
        if ans.strip().lower().startswith("y"):
            do_sleep(session, console)


def run_tty(session, console, history_file) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import WordCompleter
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("escape", "enter")  # Alt-Enter (or Esc Enter) inserts a newline
    def _(event):
        event.current_buffer.insert_text("\n")

    def toolbar():
        parts = [f" {session.model_path.rstrip('/').split('/')[-1]}"]
        if session.memory:
            c = session.memory.counts()
            d = session.drowsiness()
            if session.learner.busy():
                parts.append(f"learning {session.learner.doing()}")
            elif session.learner.finished():
                parts.append(f"learned [{session.learner.finished()}]")
            parts.append(f"memories {c['pending']} pending / {c['consolidated']} consolidated / "
                         f"{c['degraded']} degraded")
            parts.append(f"{drowsy_label(d)} {d:.1f}")
        return "  |  ".join(parts + ["/help"])

    prompt = PromptSession(history=FileHistory(str(history_file)),
                           completer=WordCompleter(list(COMMANDS), sentence=True),
                           key_bindings=bindings, bottom_toolbar=toolbar,
                           refresh_interval=0.5)     # the toolbar follows the Learner
    console.print("[bold]sleepllm[/bold]: /help for commands, Alt-Enter for a new line, "
                  "Ctrl-C stops a reply, Ctrl-D quits")
    _resume(session, console)
    while True:
        try:
            line = prompt.prompt("you> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            _quit(session, console, prompt)
            break
        if not line.strip():
            continue
        try:
            if line.startswith("/"):
                if line.strip().lower() in ("/quit", "/exit"):
                    _quit(session, console, prompt)
                    break
                handle_command(session, line.strip(), console)
                continue
        except KeyboardInterrupt:
            console.print("[dim]stopped waiting; the learning goes on[/dim]")
            continue
        session.report(console)          # the reply does not wait for the Learner
        t0 = time.perf_counter()
        try:
            answer = session.reply(line, lambda s: (sys.stdout.write(s), sys.stdout.flush()))
        except ValueError as e:
            console.print(f"[red]{e}[/red]")
            continue
        sys.stdout.write("\n")
        if any(m in answer for m in ("**", "```", "\n- ", "\n1. ", "# ")):
            console.print(Markdown(answer))   # re-render formatted replies
        if session.show_speed:
            console.print(f"[dim]{session.last_speed:.1f} tok/s, "
                          f"{time.perf_counter() - t0:.1f} s[/dim]")
        _after_message(session, line, console, wait=False)
    return 0
