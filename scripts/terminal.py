"""Drive `sleepllm chat` in a real terminal: tests/test_integration.py, scripts/wake_wait.py."""
import os


class Terminal:
    """A program on a pseudo-terminal of 120×40 (prompt-toolkit's real input path); the
    output is read with escape sequences removed, cursor-position requests are answered."""

    def __init__(self, argv, env, cwd=None):
        import fcntl
        import pty
        import struct
        import termios

        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            if cwd:
                os.chdir(cwd)
            os.execve(argv[0], argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.seen = ""

    def read_until(self, text, timeout=600, since=0):
        """Read until `text` appears in the output from position `since` on; returns the
        output so far."""
        import re
        import select
        import time

        end = time.time() + timeout
        while text not in self.seen[since:]:
            left = end - time.time()
            assert left > 0, f"no {text!r} in:\n{self.seen[-3000:]}"
            if select.select([self.fd], [], [], min(left, 1.0))[0]:
                try:
                    data = os.read(self.fd, 65536).decode(errors="replace")
                except OSError:       # the child closed the terminal
                    data = ""
                for _ in range(data.count("\x1b[6n")):   # where is the cursor? (the toolbar
                    os.write(self.fd, b"\x1b[20;1R")   # is drawn once the height is known)
                if not data:
                    assert text in self.seen[since:], \
                        f"exited before {text!r}:\n{self.seen[-3000:]}"
                self.seen += re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r", "", data)
        return self.seen

    def type(self, line):
        os.write(self.fd, line.encode() + b"\r")
