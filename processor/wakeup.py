"""When the daemon wakes and what it does then: a pure state machine, no I/O, no clock of its own.

The daemon executes its decisions. Everything it knows comes in as arguments: the monotonic time `now`,
the seconds until the next deadline by the database's clock (`None` when nothing is scheduled), what the
last sweep did, and why a sleep ended.

    after a sweep (CLAIM)      capacity full          -> sleep a tick, a freed slot ends it, then CLAIM
                               rows due but locked    -> CLAIM again after 0 s (claimed some) or a short,
                                                         doubling pause (claimed none: another worker holds them)
                               next deadline <= tick  -> sleep until it, then CLAIM
                               none, or beyond a tick -> sleep a tick, then LOOK (the safety tick)
    after a look (LOOK)        due now                -> CLAIM at once
                               otherwise              -> as after a sweep
    after a database error     -> sleep the backoff (0.5 s doubling to 30 s, jittered), then CLAIM
    a sleep ends because       the time came          -> what was planned (CLAIM or LOOK)
                               a row is due now, the listener reconnected, a slot was freed -> CLAIM
                               a row falls due before the plan (a notification) -> LOOK: the database's
                                                         clock says when, one statement, no claim
                               stop                   -> STOP
    a deadline the daemon recorded itself (a backoff; it sends no NOTIFY) moves the plan earlier and
    turns it into CLAIM at that time; nothing is claimed before.

The daemon checks its parts (listener, tasks) on every turn of the loop, LOOK turns included, so a dead
listener is noticed within one tick even when idle.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from processor.backoff import Backoff


class Do(enum.Enum):
    CLAIM = "claim"  # claim what is due and start deliveries, then ask for the next deadline
    LOOK = "look"  # ask for the next deadline only; claim if something is due
    STOP = "stop"


class Woke(enum.Enum):
    TIME = "time"  # the planned time came
    DUE = "due"  # a notification for a row due now, or the listener reconnected (notifications lost)
    SLOT = "slot"  # a delivery slot was freed while capacity was full
    SOONER = "sooner"  # a notification for a row due before the planned time
    STOP = "stop"


@dataclass(frozen=True)
class Sleep:
    at: float  # monotonic time to wake
    then: Do  # what to do when the time comes
    slot_ends_it: bool = False  # capacity was full: a freed slot ends the sleep


@dataclass
class WakeUp:
    tick_s: float
    errors: Backoff = field(default_factory=Backoff)
    locked: Backoff = field(default_factory=lambda: Backoff(first_s=0.05, cap_s=1.0, jitter=0.0))

    def after_sweep(self, now: float, *, claimed: int, capacity_limited: bool,
                    next_deadline_s: float | None) -> Sleep:
        self.errors.reset()
        if capacity_limited:
            self.locked.reset()
            return Sleep(now + self.tick_s, Do.CLAIM, slot_ends_it=True)
        if next_deadline_s is not None and next_deadline_s <= 0:
            # due rows the sweep could not take (locked by another transaction): do not spin on them
            if claimed:
                self.locked.reset()
                return Sleep(now, Do.CLAIM)
            return Sleep(now + self.locked.next(), Do.CLAIM)
        self.locked.reset()
        return self._until(now, next_deadline_s)

    def after_look(self, now: float, next_deadline_s: float | None) -> Sleep:
        self.errors.reset()
        if next_deadline_s is not None and next_deadline_s <= 0:
            return Sleep(now, Do.CLAIM)
        return self._until(now, next_deadline_s)

    def after_error(self, now: float) -> Sleep:
        return Sleep(now + self.errors.next(), Do.CLAIM)  # after an error, sweep rather than only look

    def on_wake(self, woke: Woke, sleep: Sleep) -> Do:
        if woke is Woke.STOP:
            return Do.STOP
        if woke is Woke.TIME:
            return sleep.then
        if woke is Woke.SOONER:
            return Do.LOOK
        return Do.CLAIM

    def hinted(self, now: float, due_at: float, sleep: Sleep | None) -> Woke | None:
        """A notification says a row is due at `due_at` (monotonic, by our clock): why to wake, if at all."""
        if due_at <= now:
            return Woke.DUE
        if sleep is None or due_at < sleep.at:
            return Woke.SOONER
        return None

    @staticmethod
    def earlier(sleep: Sleep, at: float) -> Sleep:
        """A deadline the daemon recorded itself: wake then and claim, if it comes before the plan."""
        return replace(sleep, at=at, then=Do.CLAIM) if at < sleep.at else sleep

    def _until(self, now: float, next_deadline_s: float | None) -> Sleep:
        """Until the deadline, or the safety tick when it comes first (then only look, not claim).

        No margin is added: epoll rounds its time-out up to the next millisecond, so we never wake early.
        """
        if next_deadline_s is None or next_deadline_s > self.tick_s:
            return Sleep(now + self.tick_s, Do.LOOK)
        return Sleep(now + next_deadline_s, Do.CLAIM)
