"""Which generators this daemon saw pause, and when: a row claimed before its generator paused and not sent yet
is given back unsent (`released: generator paused`), like the rows waiting in the ready queue.

A pause is marked when an outcome opens the generator's circuit: at once for a 401/403 (an unauthorized answer
always opens a closed circuit, SPEC 4), before its record; for other outcomes when the record says `opened`.
Only rows claimed before the mark are held back, so a probe claimed afterwards still goes. A pause another daemon
caused is not seen here: the database's claim rules stop new rows, and rows already claimed are sent.
"""

from __future__ import annotations

import time

MAX_NAMES = 1024  # rows may name any number of generators: bounded


class Pauses:
    def __init__(self) -> None:
        self._at: dict[str, float] = {}  # generator -> when it paused (time.monotonic)

    def mark(self, generator: str) -> None:
        if len(self._at) >= MAX_NAMES and generator not in self._at:
            self._at.clear()  # forgetting a pause only means sending what was claimed before it
        self._at[generator] = time.monotonic()

    def clear(self, generator: str) -> None:
        """The circuit closed again: what was claimed before may go."""
        self._at.pop(generator, None)

    def since(self, generator: str, claimed_at: float) -> bool:
        """Whether the generator paused after a row of it was claimed (monotonic time)."""
        return self._at.get(generator, -1.0) >= claimed_at
