"""Log lines are written at once outside the daemon, and once per event-loop turn while it runs: in order,
none lost (another thread's, the last ones at batch_lines(False))."""

from __future__ import annotations

import asyncio
import io
import json
import threading

from processor import logs
from processor.log_lines import Lines


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _events(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


def test_outside_a_loop_every_line_is_written_at_once() -> None:
    stream = CountingStream()
    logs.configure("json", "info", stream=stream)
    logs.batch_lines(True)
    try:
        logs.get_logger().info("one")
        assert _events(stream) == ["one"]
        logs.get_logger().info("two")
        assert _events(stream) == ["one", "two"] and stream.writes == 2
    finally:
        logs.batch_lines(False)


async def test_in_a_loop_one_turns_lines_are_written_together_in_order() -> None:
    stream = CountingStream()
    logs.configure("json", "info", stream=stream)
    logs.batch_lines(True)
    try:
        log = logs.get_logger()
        for i in range(50):
            log.info(f"line{i}")
        assert stream.writes == 0  # not yet: at the end of this turn
        await asyncio.sleep(0)
        assert _events(stream) == [f"line{i}" for i in range(50)] and stream.writes == 1
        log.info("next")
        thread = threading.Thread(target=lambda: log.info("from a thread"))
        thread.start()
        thread.join()
        log.info("last")
    finally:
        logs.batch_lines(False)  # writes what is pending
    assert _events(stream)[50:] == ["next", "from a thread", "last"]


async def test_a_broken_stream_loses_the_lines_but_never_raises() -> None:
    stream = io.StringIO()
    lines = Lines(stream)
    lines.batching = True
    stream.close()
    lines.write("x\n")
    await asyncio.sleep(0)  # the drain at the end of the turn meets a closed stream
    lines.batching = False
    lines.write("y\n")


def test_a_line_logged_while_lines_are_being_written_neither_deadlocks_nor_is_lost() -> None:
    # a finaliser run by the garbage collector in the middle of the stream's write may log (asyncio's "Task
    # was destroyed", aiohttp's "Unclosed client session"): it re-enters the writer on the same thread
    class Reentering(io.StringIO):
        lines: Lines | None = None

        def write(self, text: str) -> int:
            if self.lines is not None:
                lines, self.lines = self.lines, None
                lines.write("from a finaliser\n")
            return super().write(text)

    stream = Reentering()
    lines = Lines(stream)
    stream.lines = lines
    done = threading.Event()
    def write() -> None:
        lines.write("a line\n")
        done.set()

    worker = threading.Thread(target=write, daemon=True)  # a daemon thread: a deadlock must not hang pytest
    worker.start()
    worker.join(5)
    assert done.is_set(), "the writer deadlocked on its own lock"
    assert sorted(stream.getvalue().splitlines()) == ["a line", "from a finaliser"]
