"""One run's shared throughput controls: a concurrency cap, a client-side rate limit, and a pause.

Every API call of a run passes through the same :class:`Throttle`. The rate limit is a sliding
window (at most ``requests`` sends in any ``per_seconds``), so the limiter prevents 429s instead of
reacting to them; a 429 that still arrives pauses *every* call until its ``Retry-After`` has passed,
because the server's budget is shared by the whole run, not by one call.

A wait a person would notice is said when it starts, at the default verbosity: every wait of this
run's own making that will last ``NOTICE_SECONDS`` or more goes to the ``reconciler.wait`` logger (at
INFO), which ``reconciler.cli.main`` shows without ``-v``, with what it waits for and how long. So a
run under a tight ``--rate-limit`` or a long ``Retry-After`` says so instead of going quiet; shorter
waits, the ordinary pacing of a busy run, stay silent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

# Descope publishes 1000 requests / 10 s for backend traffic and 100 / 60 s for general traffic;
# the default stays well under the first.
DEFAULT_CONCURRENCY = 8
DEFAULT_RATE = (400, 10.0)

# Arrival times at the server jitter with latency, so leave a little room at the window's edge.
WINDOW_MARGIN_FRACTION = 0.02
WINDOW_MARGIN_MIN = 0.1  # 50 ms proved too little on a loaded 2-core CI runner


# Waits a person should hear about, logged at INFO and shown at the default verbosity (see the
# docstring); the API client (reconciler.descope.transport) and the project lock use it too.
wait_log = logging.getLogger("reconciler.wait")
# A wait expected to last at least this long is announced when it starts.
NOTICE_SECONDS = 3.0


def seconds_text(value: float) -> str:
    """A duration as a wait line shows it: ``0.4 s``, ``2.5 s``, ``12 s``."""
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


@dataclass(frozen=True)
class ThrottleSettings:
    concurrency: int = DEFAULT_CONCURRENCY
    requests: int = DEFAULT_RATE[0]
    per_seconds: float = DEFAULT_RATE[1]

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.requests < 1 or self.per_seconds <= 0:
            raise ValueError("the rate limit must allow at least 1 request in a positive number of seconds")


def parse_rate(text: str) -> tuple[int, float]:
    """``"400/10"`` → ``(400, 10.0)``: N requests per SECONDS."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s?\s*", text)
    # A window over an hour, or a count past a million, is a typo that would stall the run silently.
    if not match or not 1 <= int(match.group(1)) <= 1_000_000 or not 0 < float(match.group(2)) <= 3600:
        raise ValueError(f"invalid rate limit {text!r}: expected REQUESTS/SECONDS, e.g. 400/10")
    return int(match.group(1)), float(match.group(2))


class Throttle:
    """Admits calls under the concurrency cap and the rate limit, and honours shared pauses."""

    def __init__(
        self,
        settings: ThrottleSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        notice_after: float | None = None,
    ) -> None:
        self.settings = settings or ThrottleSettings()
        self.notice_after = NOTICE_SECONDS if notice_after is None else notice_after
        self._clock = clock
        self._sleep = sleep
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._admission = asyncio.Lock()
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self._pause_reason = ""
        self._announced_until = -math.inf  # the end of the last pause announced
        window = self.settings.per_seconds
        self._window = window + max(WINDOW_MARGIN_MIN, window * WINDOW_MARGIN_FRACTION)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the concurrent slots for a single request, admitted by the rate limit."""
        async with self._slots:
            await self._admit()
            yield

    def pause(self, seconds: float, reason: str = "") -> None:
        """Stop admitting any call for ``seconds`` (a 429's Retry-After, which the API client bounds);
        ``reason`` says why, for the line that announces a long pause."""
        if not math.isfinite(seconds):  # inf would stop every call for good; nan would be ignored
            raise ValueError(f"a pause must be a finite number of seconds, not {seconds}")
        until = self._clock() + max(seconds, 0.0)
        if until > self._paused_until:
            self._paused_until, self._pause_reason = until, reason

    async def _admit(self) -> None:
        # One waiter at a time decides, so admissions are in order and never exceed the window.
        async with self._admission:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    self._announce_pause(self._paused_until - now)
                    await self._sleep(self._paused_until - now)
                    continue
                while self._sent and self._sent[0] <= now - self._window:
                    self._sent.popleft()
                if len(self._sent) < self.settings.requests:
                    self._sent.append(now)
                    return
                wait = self._sent[0] + self._window - now
                if wait >= self.notice_after:
                    limit = f"{self.settings.requests} requests per {self.settings.per_seconds:g} s"
                    wait_log.info(
                        "waiting %s before the next API call: the client-side rate limit (%s, "
                        "--rate-limit) is reached",
                        seconds_text(wait),
                        limit,
                    )
                await self._sleep(wait)

    def _announce_pause(self, wait: float) -> None:
        """Say a long pause once: concurrent 429s that extend it by a moment do not repeat it."""
        if wait < self.notice_after or self._paused_until < self._announced_until + 1.0:
            return
        self._announced_until = self._paused_until
        why = f": {self._pause_reason}" if self._pause_reason else ""
        wait_log.info("pausing every API call for %s%s", seconds_text(wait), why)
