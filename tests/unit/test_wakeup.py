"""The wake-up state machine (processor.wakeup), transition by transition, on a fake clock."""

from __future__ import annotations

import pytest

from processor.backoff import Backoff
from processor.wakeup import Do, Sleep, WakeUp, Woke

TICK = 60.0
NOW = 1000.0


def machine() -> WakeUp:
    return WakeUp(TICK, errors=Backoff(uniform=lambda _lo, _hi: 1.0))


@pytest.mark.parametrize(("claimed", "capacity_limited", "next_s", "expected"), [
    # capacity full: wait for a freed slot (or a tick), then claim
    (5, True, None, Sleep(NOW + TICK, Do.CLAIM, slot_ends_it=True)),
    # the next deadline within a tick: sleep until it, then claim
    (0, False, 2.5, Sleep(NOW + 2.5, Do.CLAIM)),
    (3, False, TICK, Sleep(NOW + TICK, Do.CLAIM)),
    # nothing scheduled, or later than a tick: the safety tick, which only looks
    (0, False, None, Sleep(NOW + TICK, Do.LOOK)),
    (1, False, 3600.0, Sleep(NOW + TICK, Do.LOOK)),
    # rows due but not claimed this time, yet some were: claim again at once
    (4, False, 0.0, Sleep(NOW, Do.CLAIM)),
    (4, False, -3.0, Sleep(NOW, Do.CLAIM)),
])
def test_after_a_sweep(claimed: int, capacity_limited: bool, next_s: float | None, expected: Sleep) -> None:
    assert machine().after_sweep(NOW, claimed=claimed, capacity_limited=capacity_limited,
                                 next_deadline_s=next_s) == expected


def test_due_rows_locked_elsewhere_are_not_spun_on() -> None:
    wake = machine()
    pauses = [wake.after_sweep(NOW, claimed=0, capacity_limited=False, next_deadline_s=-1).at - NOW
              for _ in range(7)]
    assert pauses == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    # a sweep that claims again ends the pause series
    assert wake.after_sweep(NOW, claimed=1, capacity_limited=False, next_deadline_s=-1) == Sleep(NOW, Do.CLAIM)
    assert wake.after_sweep(NOW, claimed=0, capacity_limited=False, next_deadline_s=-1).at - NOW == pytest.approx(0.05)


@pytest.mark.parametrize(("next_s", "expected"), [
    (None, Sleep(NOW + TICK, Do.LOOK)),  # idle: look again a tick later
    (0.0, Sleep(NOW, Do.CLAIM)),  # due now: claim at once
    (-10.0, Sleep(NOW, Do.CLAIM)),
    (12.0, Sleep(NOW + 12.0, Do.CLAIM)),
    (TICK + 1, Sleep(NOW + TICK, Do.LOOK)),
])
def test_after_a_look(next_s: float | None, expected: Sleep) -> None:
    assert machine().after_look(NOW, next_s) == expected


def test_database_errors_back_off_then_sweep() -> None:
    wake = machine()
    delays = [wake.after_error(NOW).at - NOW for _ in range(9)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert all(wake.after_error(NOW).then is Do.CLAIM for _ in range(2))
    wake.after_look(NOW, None)  # a success resets the series
    assert wake.after_error(NOW).at - NOW == 0.5


@pytest.mark.parametrize(("woke", "planned", "expected"), [
    (Woke.TIME, Do.LOOK, Do.LOOK),
    (Woke.TIME, Do.CLAIM, Do.CLAIM),
    (Woke.DUE, Do.LOOK, Do.CLAIM),
    (Woke.SLOT, Do.CLAIM, Do.CLAIM),
    (Woke.SOONER, Do.LOOK, Do.LOOK),
    (Woke.SOONER, Do.CLAIM, Do.LOOK),
    (Woke.STOP, Do.CLAIM, Do.STOP),
])
def test_why_a_sleep_ended_decides_what_comes_next(woke: Woke, planned: Do, expected: Do) -> None:
    assert machine().on_wake(woke, Sleep(NOW + 5, planned)) == expected


@pytest.mark.parametrize(("due_at", "sleeping", "expected"), [
    (NOW - 1, Sleep(NOW + 30, Do.LOOK), Woke.DUE),  # due already: claim now
    (NOW, None, Woke.DUE),  # while working too
    (NOW + 5, Sleep(NOW + 30, Do.LOOK), Woke.SOONER),  # before the plan: ask the database's clock
    (NOW + 5, None, Woke.SOONER),  # while working: the loop's own query may have run before the commit
    (NOW + 40, Sleep(NOW + 30, Do.LOOK), None),  # after the plan: nothing to do
])
def test_notifications(due_at: float, sleeping: Sleep | None, expected: Woke | None) -> None:
    assert machine().hinted(NOW, due_at, sleeping) == expected


def test_own_deadlines_move_the_plan_earlier_and_claim_then() -> None:
    tick = Sleep(NOW + TICK, Do.LOOK)
    assert WakeUp.earlier(tick, NOW + 4) == Sleep(NOW + 4, Do.CLAIM)
    assert WakeUp.earlier(tick, NOW + TICK + 1) == tick  # later than the plan: unchanged
    assert WakeUp.earlier(tick, float("inf")) == tick  # nothing recorded
    slot = Sleep(NOW + TICK, Do.CLAIM, slot_ends_it=True)
    assert WakeUp.earlier(slot, NOW + 1) == Sleep(NOW + 1, Do.CLAIM, slot_ends_it=True)


def test_backoff_jitter_stays_within_twenty_percent() -> None:
    seen: list[tuple[float, float]] = []

    def uniform(lo: float, hi: float) -> float:
        seen.append((lo, hi))
        return hi

    backoff = Backoff(first_s=1.0, cap_s=1.0, uniform=uniform)
    assert backoff.next() == pytest.approx(1.2)
    assert seen == [(0.8, 1.2)]
