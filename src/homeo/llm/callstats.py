"""Outcomes and latencies of one deployment's calls over a sliding window: what
the autonomic loop's Monitor reads as a provider's error rate and latency.

The router records each attempt: a retryable failure (5xx, 429, timeout,
unreachable) as failed; an answer, or a refusal of the request itself (400),
as not, since the provider did answer. A stream's latency is that of its
first event. The clock is passed in, so tests need no sleeping.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CallWindow:
    """The calls of the last `window_seconds`: how many, how many failed, the
    50th and 95th percentile latency of all of them, and how long ago the
    newest call, the newest failure and the newest success ended (None
    without any)."""

    calls: int
    failures: int
    p50_seconds: float | None
    p95_seconds: float | None
    last_call_age_seconds: float | None = None
    last_failure_age_seconds: float | None = None
    last_success_age_seconds: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.calls if self.calls else None


class CallStats:
    def __init__(
        self,
        window_seconds: float = 60.0,
        *,
        max_calls: int = 2048,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Keeps at most `max_calls` of the newest calls, so a busy provider
        costs bounded memory and a bounded sort."""
        self.window_seconds = window_seconds
        self.clock = clock
        self._calls: deque[tuple[float, float, bool]] = deque(maxlen=max_calls)

    def observe(self, seconds: float, *, failed: bool) -> None:
        self._calls.append((self.clock(), seconds, failed))

    def window(self) -> CallWindow:
        now = self.clock()
        horizon = now - self.window_seconds
        while self._calls and self._calls[0][0] <= horizon:
            self._calls.popleft()
        calls = list(self._calls)
        if not calls:
            return CallWindow(0, 0, None, None)
        latencies = sorted(seconds for _, seconds, _ in calls)
        failed_at = next((at for at, _, failed in reversed(calls) if failed), None)
        answered_at = next((at for at, _, failed in reversed(calls) if not failed), None)
        return CallWindow(
            calls=len(calls),
            failures=sum(failed for _, _, failed in calls),
            p50_seconds=_percentile(latencies, 0.50),
            p95_seconds=_percentile(latencies, 0.95),
            last_call_age_seconds=now - calls[-1][0],
            last_failure_age_seconds=None if failed_at is None else now - failed_at,
            last_success_age_seconds=None if answered_at is None else now - answered_at,
        )


def _percentile(ordered: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of them at or below it."""
    rank = math.ceil(share * len(ordered) - 1e-9)
    return ordered[min(max(rank, 1), len(ordered)) - 1]
