"""The free-disk floor (store/disk.py, HOMEO_MIN_FREE_DISK): on a real SQLite
file and a real PostgreSQL, a store whose data directory's disk is below the
floor refuses new runs with DiskFull, and takes them again once above it;
the setting reads sizes like 512M."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from homeo.backends import Backends, open_backends
from homeo.config import Settings
from homeo.store.disk import DiskFloor, DiskFull
from homeo.store.models import NewRun

TiB = 2**40


@pytest.fixture
def backends(backend_url: str) -> Iterator[Backends]:
    opened = open_backends(backend_url)
    yield opened
    opened.close()


def test_below_the_floor_no_run_is_created_and_above_it_they_are(
        backends: Backends, tmp_path: Path) -> None:
    store = backends.store
    free = DiskFloor(tmp_path, 0).free_bytes()
    store.disk_floor = DiskFloor(tmp_path, free + TiB)  # more than this disk will ever have
    with pytest.raises(DiskFull, match=r"below the floor of .* MiB \(HOMEO_MIN_FREE_DISK\):"
                                       r" no new runs are accepted") as refused:
        store.create_run(NewRun(tenant_id="acme", agent="bot", input="hi"))
    assert refused.value.floor_bytes == free + TiB and refused.value.path == tmp_path
    assert store.list_runs("acme") == []
    store.disk_floor = DiskFloor(tmp_path, 1)
    run, created = store.create_run(NewRun(tenant_id="acme", agent="bot", input="hi"))
    assert created and [r.id for r in store.list_runs("acme")] == [run.id]


@pytest.mark.parametrize(("given", "size"), [("0", 0), ("4096", 4096), ("512M", 512 * 2**20),
                                             ("1.5G", 3 * 2**29), ("64KiB", 64 * 2**10)])
def test_the_floor_setting_reads_sizes(given: str, size: int, tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, min_free_disk=given).min_free_disk == size


def test_a_floor_that_is_no_size_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="'lots' is not a size: give bytes"):
        Settings(data_dir=tmp_path, min_free_disk="lots")


@pytest.mark.slow
def test_homeo_run_on_a_disk_below_the_floor_says_why(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    env.update(PYTHONPATH=src, HOMEO_DATA_DIR=str(tmp_path), HOMEO_MIN_FREE_DISK=str(2**60))
    done = subprocess.run([sys.executable, "-c", "from homeo.cli import main; main()", "run",
                           "text-stats", "hi"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "no new runs are accepted" in done.stderr and "HOMEO_MIN_FREE_DISK" in done.stderr
