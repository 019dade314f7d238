"""Request latencies by minute (what API latency SLOs count), under an injected clock."""

from __future__ import annotations

from homeo.observe.windows import LatencyWindows

BOUNDS = (0.1, 0.5, 1.0)


def test_counts_over_windows_of_whole_minutes() -> None:
    windows = LatencyWindows(BOUNDS, retention_seconds=3600, started=1000.0)
    for at, seconds in [(1200.0, 0.05), (1210.0, 0.7), (1260.0, 0.5), (1500.0, 2.0),
                        (1510.0, 0.1)]:
        windows.observe(seconds, now=at)
    assert windows.counts(0.0, 0.5) == (5, 3)
    assert windows.counts(1200.0, 0.1) == (5, 2)
    assert windows.counts(1230.0, 0.5) == (5, 3)  # the window starts mid-minute: whole minute
    assert windows.counts(1260.0, 0.5) == (3, 2)
    assert windows.counts(1260.0, 1.0) == (3, 2)
    assert windows.counts(1500.0, 0.1) == (2, 1)
    assert windows.counts(1560.0, 1.0) == (0, 0)
    assert windows.covers_seconds(1600.0) == 600.0


def test_minutes_older_than_the_retention_are_dropped() -> None:
    windows = LatencyWindows(BOUNDS, retention_seconds=120, started=0.0)
    windows.observe(0.05, now=0.0)
    windows.observe(0.05, now=60.0)
    windows.observe(0.05, now=600.0)
    assert windows.counts(540.0, 0.1) == (1, 1)
    # Asking further back than the retention counts from the oldest minute kept.
    assert windows.counts(0.0, 0.1) == (1, 1)
