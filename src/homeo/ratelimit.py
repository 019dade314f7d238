"""Rate limits: a token bucket per key, with the clock passed in. Tools use
one per (tenant, tool), the API one per API key.

Buckets live in the process that takes from them, so with several processes
(workers, servers) each enforces the limit on its own calls.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)\s*$")


class RateLimitError(ValueError):
    """A rate limit is written wrongly."""


@dataclass(frozen=True)
class RateLimit:
    """`calls` per `period_seconds`; a burst of up to `calls` is allowed."""

    calls: int
    period_seconds: float
    text: str

    def __str__(self) -> str:
        return self.text


def parse_rate_limit(text: str) -> RateLimit:
    """`"10/minute"` -> RateLimit(10, 60.0). Units: second, minute, hour."""
    match = _RATE.match(text)
    if match is None or int(match.group(1)) < 1:
        raise RateLimitError(
            f"rate limit {text!r} must look like N/second, N/minute or N/hour with N >= 1"
        )
    unit = match.group(2)
    return RateLimit(int(match.group(1)), _PERIODS[unit], f"{int(match.group(1))}/{unit}")


class TokenBucket:
    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self.tokens = float(limit.calls)
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token; return 0.0 on success, else the seconds until one is free."""
        rate = self.limit.calls / self.limit.period_seconds
        self.tokens = min(float(self.limit.calls), self.tokens + (now - self.updated) * rate)
        self.updated = max(self.updated, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


class RateLimiter:
    """One token bucket per key, created on first use."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[tuple[str, ...], TokenBucket] = {}
        self._lock = threading.Lock()

    def take(self, key: tuple[str, ...], limit: RateLimit) -> float:
        """0.0 if a call may go ahead now, else how many seconds until one may."""
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None or bucket.limit != limit:
                bucket = self._buckets[key] = TokenBucket(limit, now)
            return bucket.take(now)
