"""The shared throttle: sliding-window rate limit, concurrency cap and shared pauses (fake clock)."""

from __future__ import annotations

import asyncio

import pytest

from reconciler.throttle import (
    WINDOW_MARGIN_FRACTION,
    WINDOW_MARGIN_MIN,
    Throttle,
    ThrottleSettings,
    parse_rate,
)


class FakeClock:
    """Time that moves only when a coroutine sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


async def _admit_times(throttle: Throttle, clock: FakeClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        async with throttle.slot():
            times.append(clock.now)
    return times


async def test_no_window_ever_holds_more_than_the_limit() -> None:
    clock = FakeClock()
    throttle = Throttle(
        ThrottleSettings(concurrency=4, requests=10, per_seconds=1.0), clock=clock, sleep=clock.sleep
    )
    times = await _admit_times(throttle, clock, 35)
    for start in times:
        assert sum(1 for t in times if start <= t < start + 1.0) <= 10
    # ... and it does not waste the budget: 35 sends take just over three windows.
    margin = max(WINDOW_MARGIN_MIN, 1.0 * WINDOW_MARGIN_FRACTION)  # the room left at each window's edge
    assert 3.0 < times[-1] < 3.0 + 3 * margin + 0.01


async def test_a_pause_holds_every_caller() -> None:
    clock = FakeClock()
    throttle = Throttle(
        ThrottleSettings(concurrency=2, requests=100, per_seconds=1.0), clock=clock, sleep=clock.sleep
    )
    throttle.pause(5.0)
    times = await _admit_times(throttle, clock, 3)
    assert times == [5.0, 5.0, 5.0]


async def test_concurrency_is_capped() -> None:
    throttle = Throttle(ThrottleSettings(concurrency=3, requests=1000, per_seconds=1.0))
    active = peak = 0

    async def call() -> None:
        nonlocal active, peak
        async with throttle.slot():
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1

    await asyncio.gather(*(call() for _ in range(20)))
    assert peak == 3


@pytest.mark.parametrize(
    ("text", "expected"), [("400/10", (400, 10.0)), ("100/60s", (100, 60.0)), (" 5 / 0.5 ", (5, 0.5))]
)
def test_parse_rate(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "100", "0/10", "10/0", "ten/10", "-1/5", "10/-1", "10/inf", "a/10"])
def test_parse_rate_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="expected REQUESTS/SECONDS"):
        parse_rate(text)


def test_settings_reject_a_zero_cap() -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        ThrottleSettings(concurrency=0)
