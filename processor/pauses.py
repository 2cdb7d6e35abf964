"""Which generators this daemon saw pause, and when: a row claimed before its generator paused and not sent yet
is given back unsent (`released: generator paused`), like the rows waiting in the ready queue.

A pause is marked when an outcome opens the generator's circuit: at once for a 401/403 (an unauthorized answer
always opens a closed circuit, SPEC 4), before its record; for other outcomes when the record says `opened`.
Only rows claimed before the mark are held back, so a probe claimed afterwards still goes; a probe's record
that closes the circuit again forgets the marks made before that probe was claimed, not a newer one. A pause
another daemon caused is not seen here: the database's claim rules stop new rows, and rows already claimed
are sent.
"""

from __future__ import annotations

import time

MAX_NAMES = 10_000  # rows may name any number of generators: bounded (about 1.5 MB at most)


class Pauses:
    def __init__(self, max_age_s: float = 3600.0) -> None:
        # a row claimed longer ago than its lease is never sent (Scheduler's lease budget): a mark older than
        # that holds nothing back any more and is the first to go when the table is full
        self.max_age_s = max_age_s
        self._at: dict[str, float] = {}  # generator -> when it paused (time.monotonic), oldest first

    def mark(self, generator: str) -> None:
        now = time.monotonic()
        self._at.pop(generator, None)  # re-inserted: the dict stays in the order of the marks
        if len(self._at) >= MAX_NAMES:
            for name in [n for n, at in self._at.items() if at < now - self.max_age_s]:
                del self._at[name]
            while len(self._at) >= MAX_NAMES:
                del self._at[next(iter(self._at))]  # the oldest
        self._at[generator] = now

    def clear(self, generator: str, claimed_before: float) -> None:
        """The circuit closed again, by the outcome of a row claimed at `claimed_before`: a mark made before
        that claim is over; a newer one (a 401 since) stays."""
        if self._at.get(generator, float("inf")) <= claimed_before:
            del self._at[generator]

    def since(self, generator: str, claimed_at: float) -> bool:
        """Whether the generator paused after a row of it was claimed (monotonic time)."""
        return self._at.get(generator, -1.0) >= claimed_at
