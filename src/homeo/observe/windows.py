"""Latencies counted by minute, so that the share of fast ones over the last
5 minutes, hour or 30 days can be read at any time (`LatencyWindows.counts`).

A snapshot of the per-bucket counts is kept at the start of every minute that
saw a request; the count over a window is now's counts less the snapshot
where the window starts. Windows are thus whole minutes: a window starting
mid-minute includes that whole minute. Only this process's requests count,
since it started (`covers_seconds`)."""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Sequence

MINUTE = 60


class LatencyWindows:
    def __init__(self, bounds: Sequence[float], *, retention_seconds: int, started: float) -> None:
        """`started`: when this process began counting (epoch seconds)."""
        self.bounds = tuple(bounds)
        self.retention_minutes = retention_seconds // MINUTE + 1
        # Requests per bucket: bucket i holds those at most bounds[i] (and above
        # bounds[i-1]); the last holds those above every bound.
        self._counts = [0] * (len(self.bounds) + 1)
        self._snapshots: deque[tuple[int, tuple[int, ...]]] = deque()
        self._started = started
        self._lock = threading.Lock()

    def observe(self, seconds: float, *, now: float) -> None:
        minute = int(now // MINUTE)
        with self._lock:
            if not self._snapshots or self._snapshots[-1][0] < minute:
                self._snapshots.append((minute, tuple(self._counts)))
                while self._snapshots[0][0] < minute - self.retention_minutes:
                    self._snapshots.popleft()
            self._counts[bisect.bisect_left(self.bounds, seconds)] += 1

    def counts(self, since: float, within: float) -> tuple[int, int]:
        """Requests from the minute of `since` on: all of them, and those that
        took at most `within` seconds (a bound)."""
        index = self.bounds.index(within)
        minute = int(since // MINUTE)
        with self._lock:
            at = bisect.bisect_left(self._snapshots, minute, key=lambda snap: snap[0])
            if at == len(self._snapshots):
                return 0, 0
            base = self._snapshots[at][1]
            seen = [now - then for now, then in zip(self._counts, base, strict=True)]
        return sum(seen), sum(seen[: index + 1])

    def covers_seconds(self, now: float) -> float:
        """How long this process has counted requests."""
        return max(now - self._started, 0.0)
