"""The replay guard: a jti is used once while its token lives; the memory it keeps is bounded."""

from __future__ import annotations

from processor.replay import MemoryReplayGuard


def test_a_jti_is_used_once_until_its_token_expires() -> None:
    now = [1000.0]
    guard = MemoryReplayGuard(clock=lambda: now[0])
    assert guard.use("a", 1300.0) and not guard.use("a", 1300.0) and guard.seen("a")
    now[0] = 1301.0  # the token itself has expired by now, so forgetting its jti reopens nothing
    assert guard.use("b", 1600.0) and not guard.seen("a")


def test_memory_is_bounded_by_capacity() -> None:
    guard = MemoryReplayGuard(capacity=100, clock=lambda: 0.0)
    for i in range(1000):
        assert guard.use(f"jti-{i}", 300.0)
    assert len(guard._used) <= 100 and guard.seen("jti-999") and not guard.seen("jti-0")
