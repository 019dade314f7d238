from __future__ import annotations

import pytest
from pydantic import ValidationError

from homeo.sandbox import Limits, parse_duration, parse_size


@pytest.mark.parametrize(("text", "size"), [
    ("1024", 1024), ("512K", 512 * 2**10), ("256M", 256 * 2**20), ("1.5G", 3 * 2**29),
    ("64MiB", 64 * 2**20), ("2gb", 2 * 2**30),
])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "seconds"), [
    ("5", 5.0), ("5s", 5.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), (3, 3.0),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_limits_take_strings_and_reject_nonsense() -> None:
    limits = Limits(memory_bytes="128M", timeout_seconds="1500ms", stdout_bytes="1K")
    assert (limits.memory_bytes, limits.timeout_seconds, limits.stdout_bytes) == (
        128 * 2**20, 1.5, 1024)
    for bad in ({"memory_bytes": "lots"}, {"timeout_seconds": "soon"}, {"pids": 0},
                {"memory_bytes": "1M"}, {"cpu": 0}):
        with pytest.raises(ValidationError):
            Limits(**bad)
