"""The chat REPL: prompt-toolkit on a terminal, line-by-line script mode on a pipe."""
import sys
import time

from rich.console import Console
from rich.markdown import Markdown

from sleepllm import chat

COMMANDS = {
    "/help": "show this help",
    "/clear": "clear the conversation",
    "/status": "model, BLAS and context",
    "/quit": "quit (Ctrl-D also quits)",
}


class Session:
    """One chat: the loaded model, the conversation and the settings."""

    def __init__(self, model, tokenizer, model_path, cfg, context_window):
        self.model, self.tokenizer, self.model_path, self.cfg = model, tokenizer, model_path, cfg
        self.conv = chat.Conversation(system_prompt=cfg["system_prompt"])
        self.budget = min(int(cfg["max_context"]), context_window)
        self.show_speed = False

    def reply(self, text: str, out) -> str:
        """Send a user message, stream the reply to `out(str)`, return it.

        KeyboardInterrupt stops the reply; what was generated so far is kept."""
        self.conv.messages.append({"role": "user", "content": text})
        try:
            tokens = chat.fit(self.tokenizer, self.conv, self.budget - int(self.cfg["max_tokens"]))
        except ValueError:
            self.conv.messages.pop()
            raise
        pieces, last = [], None
        try:
            for r in chat.generate(self.model, self.tokenizer, tokens,
                                   int(self.cfg["max_tokens"]), self.cfg["temp"]):
                pieces.append(r.text)
                out(r.text)
                last = r
        except KeyboardInterrupt:
            out(" [stopped]")
        answer = "".join(pieces).strip()
        self.conv.messages.append({"role": "assistant", "content": answer})
        self.last_speed = last.generation_tps if last else 0.0
        return answer


def _help(console):
    for name, text in COMMANDS.items():
        console.print(f"  [bold]{name:<10}[/bold] {text}")


def handle_command(session, line: str, console) -> bool:
    """Run a slash command. Returns False when the REPL should exit."""
    from sleepllm.blas import blas_in_use

    cmd = line.split()[0].lower()
    if cmd in ("/quit", "/exit"):
        return False
    if cmd == "/help":
        _help(console)
    elif cmd == "/clear":
        session.conv.clear()
        console.print("[dim]conversation cleared[/dim]")
    elif cmd == "/status":
        console.print(f"model: {session.model_path}\nBLAS: {blas_in_use()}\n"
                      f"context: {len(session.conv.messages)} messages, budget "
                      f"{session.budget} tokens, {session.conv.dropped} old turns dropped")
    elif cmd == "/speed":
        session.show_speed = not session.show_speed
    else:
        console.print(f"[red]unknown command {cmd}[/red]; /help lists the commands")
    return True


def run_script(session, lines, console) -> int:
    """Script mode: one message or command per input line; replies printed plainly."""
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
    return 0


def run_tty(session, console, history_file) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import WordCompleter
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("escape", "enter")  # Alt-Enter (or Esc Enter) inserts a newline
    def _(event):
        event.current_buffer.insert_text("\n")

    prompt = PromptSession(history=FileHistory(str(history_file)),
                           completer=WordCompleter(list(COMMANDS) + ["/speed"], sentence=True),
                           key_bindings=bindings,
                           bottom_toolbar=lambda: f" {session.model_path}  |  /help ")
    console.print("[bold]sleepllm[/bold] — /help for commands, Ctrl-D to quit")
    while True:
        try:
            line = prompt.prompt("you> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        if not line.strip():
            continue
        if line.startswith("/"):
            if not handle_command(session, line.strip(), console):
                break
            continue
        t0 = time.perf_counter()
        try:
            answer = session.reply(line, lambda s: (sys.stdout.write(s), sys.stdout.flush()))
        except ValueError as e:
            console.print(f"[red]{e}[/red]")
            continue
        # streamed raw; re-render as Markdown when it has formatting worth rendering
        sys.stdout.write("\n")
        if any(m in answer for m in ("**", "```", "\n- ", "\n1. ", "# ")):
            console.print(Markdown(answer))
        if session.show_speed:
            console.print(f"[dim]{session.last_speed:.1f} tok/s, "
                          f"{time.perf_counter() - t0:.1f} s[/dim]")
    return 0
