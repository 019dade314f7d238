"""The free-disk floor (HOMEO_MIN_FREE_DISK): below it the store takes no new
work, so the runs it accepted still have room to write their steps.

A run's every step and checkpoint is written to the data directory; a disk
that fills mid-run fails runs already accepted. Refusing new runs first (the
API answers 507 Insufficient Storage) keeps that room for them. The runtime
sets `Store.disk_floor`; stores call `check()` before they create a run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from homeo.store.base import StoreError


class DiskFull(StoreError):
    """The data directory's disk has less free space than the floor: no new work."""

    def __init__(self, path: Path, free_bytes: int, floor_bytes: int) -> None:
        super().__init__(
            f"the disk of {path} has {_mib(free_bytes)} free, below the floor of"
            f" {_mib(floor_bytes)} (HOMEO_MIN_FREE_DISK): no new runs are accepted until"
            " space is freed; runs already accepted go on")
        self.path = path
        self.free_bytes = free_bytes
        self.floor_bytes = floor_bytes


@dataclass(frozen=True)
class DiskFloor:
    path: Path  # the data directory
    min_free_bytes: int

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.path).free

    def check(self) -> None:
        """Raise DiskFull when the free space is below the floor."""
        free = self.free_bytes()
        if free < self.min_free_bytes:
            raise DiskFull(self.path, free, self.min_free_bytes)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
