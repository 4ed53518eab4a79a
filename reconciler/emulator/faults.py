"""What the emulator does to traffic: latency, a sliding-window rate limit, seeded faults, and counters."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]

# The request log is for tests and demos; a cap keeps a long-running `serve` from growing without bound.
REQUEST_LOG_LIMIT = 100_000

# The 5xx statuses a fault answers with: plain errors and the gateway errors a proxy in front would give.
FAULT_STATUSES = (500, 502, 503)

# The request-log status of a request whose connection was dropped: the caller never saw a status.
STATUS_DROPPED = 0


async def apply_latency(latency_ms: float) -> None:
    """Wait as a slow network would, before the request is handled."""
    if latency_ms > 0:
        await asyncio.sleep(latency_ms / 1000)


class RateLimiter:
    """At most ``limit`` admitted requests in any ``window`` seconds; rejected ones are not counted."""

    def __init__(self, limit: int, window: float, clock: Clock = time.monotonic) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._admitted: deque[float] = deque()

    def admit(self) -> int | None:
        """None when the request may go on; otherwise the whole seconds to wait (Retry-After)."""
        now = self._clock()
        while self._admitted and self._admitted[0] <= now - self._window:
            self._admitted.popleft()
        if len(self._admitted) < self._limit:
            self._admitted.append(now)
            return None
        wait = self._admitted[0] + self._window - now
        return max(1, math.ceil(wait))

    def clear(self) -> None:
        self._admitted.clear()


@dataclass(frozen=True)
class AfterCommit:
    """How a committed mutation fails: a 5xx status, or (status None) a dropped connection."""

    status: int | None


class FaultInjector:
    """Decides, from one seeded RNG, which requests fail before handling and which after a commit."""

    def __init__(self, *, fault_rate: float, after_commit_rate: float, seed: int | None) -> None:
        self._fault_rate = fault_rate
        self._after_commit_rate = after_commit_rate
        self._seed = seed
        self._rng = random.Random(seed)  # noqa: S311 - reproducible faults, not cryptography
        self._slow_rng = random.Random(None if seed is None else seed + 1)  # noqa: S311

    def before(self) -> int | None:
        """A 5xx status to answer instead of handling the request, or None."""
        # Draw only when faults are on, so that a seeded series does not depend on unrelated settings.
        if self._fault_rate <= 0 or self._rng.random() >= self._fault_rate:
            return None
        return self._rng.choice(FAULT_STATUSES)

    def after_commit(self) -> AfterCommit | None:
        """How to fail a mutation that has been committed, or None to answer normally."""
        if self._after_commit_rate <= 0 or self._rng.random() >= self._after_commit_rate:
            return None
        if self._rng.random() < 0.5:
            return AfterCommit(status=self._rng.choice(FAULT_STATUSES))
        return AfterCommit(status=None)

    def slow(self, rate: float) -> bool:
        """Whether to answer this request late; a series of its own, so other faults repeat as before."""
        return rate > 0 and self._slow_rng.random() < rate

    def reseed(self) -> None:
        """Start the seeded series again, so that a reset emulator repeats its faults."""
        self._rng = random.Random(self._seed)  # noqa: S311
        self._slow_rng = random.Random(None if self._seed is None else self._seed + 1)  # noqa: S311


class Traffic:
    """Counters and the request log of /v1 traffic, read by tests through the admin surface."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.by_endpoint: Counter[str] = Counter()
        self.rate_limited = 0
        self.faults_before = 0
        self.faults_after_commit = 0
        self.slowed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_LIMIT)

    def arrive(self, endpoint: str, *, method: str, path: str) -> dict[str, Any]:
        """Count a request as it arrives; the returned log entry (its time, endpoint, HTTP method and
        path without the query) gets its status when answered."""
        self.by_endpoint[endpoint] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        entry: dict[str, Any] = {
            "t": self._clock(),
            "endpoint": endpoint,
            "method": method,
            "path": path,
            "status": None,
        }
        self.log.append(entry)
        return entry

    def leave(self) -> None:
        self.in_flight -= 1

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.by_endpoint),
            "total": sum(self.by_endpoint.values()),
            "rateLimited": self.rate_limited,
            "faultsBefore": self.faults_before,
            "faultsAfterCommit": self.faults_after_commit,
            "slowed": self.slowed,
            "maxInFlight": self.max_in_flight,
        }

    def requests(self) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self.log]

    def clear(self) -> None:
        """Forget counters and the log; requests still in flight stay counted as in flight."""
        self.by_endpoint.clear()
        self.rate_limited = self.faults_before = self.faults_after_commit = self.slowed = 0
        self.max_in_flight = self.in_flight
        self.log.clear()
