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
        self._scheduled_on: asyncio.AbstractEventLoop | None = None  # the loop whose turn will write them
        # re-entrant: a finaliser run by the garbage collector inside write() may log through here too
        self._lock = threading.RLock()

    def write(self, text: str) -> int:
        schedule_on = None
        with self._lock:
            self._pending.append(text)
            loop = _running_loop() if self.batching else None
            scheduled = self._scheduled_on
            if scheduled is not None and scheduled is loop:
                return len(text)  # this turn's drain writes it
            if loop is not None and scheduled is None:
                self._scheduled_on = schedule_on = loop
        if schedule_on is not None:
            schedule_on.call_soon(self.drain)  # outside the lock: call_soon may run the garbage collector
            return len(text)
        self.drain()  # not batching, outside a loop, or a drain pending on a loop that is gone: now
        return len(text)

    def flush(self) -> None:
        """A no-op: lines are written when the loop's turn ends (or at once, outside a loop)."""

    def drain(self) -> None:
        """Write every pending line now, in order."""
        with self._lock:
            self._scheduled_on = None
            if not self._pending:
                return
            text = "".join(self._pending)
            self._pending.clear()
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError, RuntimeError):  # closed (a test's, at exit), broken pipe, re-entered
                pass

    def isatty(self) -> bool:
        return self.stream.isatty()


class LineLogger:
    """structlog's logger: hands each rendered line to Lines."""

    def __init__(self, lines: Lines) -> None:
        self._lines = lines

    def msg(self, message: str) -> None:
        self._lines.write(message + "\n")

    log = debug = info = warn = warning = error = err = critical = exception = fatal = failure = msg


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def factory(lines: Lines) -> Any:
    def make(*_args: Any) -> LineLogger:
        return LineLogger(lines)

    return make
