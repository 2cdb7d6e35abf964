"""Where log lines go: a stream, written at once, or, while the daemon runs, once per event-loop turn.

A busy daemon logs a line per delivery. Written one by one, each line was a write(2) to journald's socket
(or a pipe) and a wake-up of the reader: a measurable share of a delivery's CPU. While batching is on
(Daemon.run turns it on), the lines of one turn of the event loop are joined and written together at the end
of the turn, in order; lines logged outside a running loop, or from another thread, are written at once (after
whatever is pending). Turning batching off, and the interpreter's exit, write what is pending: at most one
turn's lines are at risk, and only if the process is killed during that turn.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, TextIO


class Lines:
    """A text stream for log lines (structlog's logger and the standard library's handler write here)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.batching = False
        self._pending: list[str] = []
        self._scheduled = False
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending.append(text)
            if self.batching and not self._scheduled and self._in_loop():
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self.drain)
                return len(text)
            if self._scheduled:
                return len(text)
        self.drain()
        return len(text)

    def flush(self) -> None:
        """A no-op: lines are written when the loop's turn ends (or at once, outside a loop)."""

    def drain(self) -> None:
        """Write every pending line now, in order."""
        with self._lock:
            self._scheduled = False
            if not self._pending:
                return
            text = "".join(self._pending)
            self._pending.clear()
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # a closed stream (a test's, at exit) or a broken pipe: nothing to do
                pass

    def isatty(self) -> bool:
        return self.stream.isatty()

    def _in_loop(self) -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True


class LineLogger:
    """structlog's logger: hands each rendered line to Lines."""

    def __init__(self, lines: Lines) -> None:
        self._lines = lines

    def msg(self, message: str) -> None:
        self._lines.write(message + "\n")

    log = debug = info = warn = warning = error = err = critical = exception = fatal = failure = msg


def factory(lines: Lines) -> Any:
    def make(*_args: Any) -> LineLogger:
        return LineLogger(lines)

    return make
