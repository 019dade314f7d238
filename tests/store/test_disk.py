"""The free-disk floor (store/disk.py, HOMEO_MIN_FREE_DISK): on a real SQLite
file and a real PostgreSQL, a store whose data directory's disk is below the
floor refuses new runs with DiskFull, and takes them again once above it;
the setting reads sizes like 512M. Freeing space (what the autonomic loop does
under disk pressure) gives a SQLite file's room back to the filesystem and
leaves none of what it deleted in the files."""

from __future__ import annotations

import sqlite3
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


def _history(backends: Backends, runs: int, marker: str) -> None:
    """`runs` finished runs, three steps of 64 KiB results each, `marker` in
    every step's checkpoint."""
    store = backends.store
    result = (marker + " " + "r" * 1000 + "\n") * 64
    for index in range(runs):
        run, _ = store.create_run(NewRun(tenant_id="acme", agent="bot", input=f"{index}"),
                                  now=100.0)
        messages: list[str] = []
        for seq in range(3):
            store.begin_step("acme", run.id, seq, "tool", "read", None, now=100.0)
            messages = [*messages, result]
            store.complete_step("acme", run.id, seq, "ok", {
                "seq": seq + 1, "next": "model", "state": {"messages": messages}}, now=100.0)
        store.transition_run("acme", run.id, "succeeded", allowed_from={"queued"}, now=100.0)


def _files(path: Path) -> list[Path]:
    return [part for part in (path, path.with_name(path.name + "-wal")) if part.exists()]


def test_freeing_space_shrinks_a_sqlite_file_and_leaves_nothing_deleted_in_it(
        tmp_path: Path) -> None:
    path = tmp_path / "homeo.db"
    backends = open_backends(f"sqlite:///{path}")
    try:
        _history(backends, 30, "secret-figure-4711")
        store = backends.store
        store.db.give_back()  # the WAL checkpointed: the files hold only the history
        before = sum(part.stat().st_size for part in _files(path))

        pruned, given = store.free_space(finished_before=200.0, now=300.0)

        after = sum(part.stat().st_size for part in _files(path))
        assert (pruned.runs, pruned.checkpoints) == (30, 90)
        # The last step's checkpoint is each run's final state (it stays);
        # the first two steps' deltas, 30 x 2 x 64 KiB, went, and so did the room.
        assert pruned.bytes > 30 * 2 * 64 * 1000
        assert given == before - after and given > 0.9 * pruned.bytes
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA freelist_count").fetchone()[0] == 0
            assert raw.execute("PRAGMA secure_delete").fetchone()[0] == store.db._writer.execute(
                "PRAGMA secure_delete").fetchone()[0]
        # The runs' final states still hold the marker; no deleted copy is left
        # beyond those (the steps' outputs are "ok").
        kept = sum(part.read_bytes().count(b"secret-figure-4711") for part in _files(path))
        assert kept == 30 * 3 * 64
    finally:
        backends.close()


def test_a_sqlite_file_from_before_incremental_vacuum_is_pruned_and_reuses_its_pages(
        tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:  # as an earlier homeo made it: no auto-vacuum
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("CREATE TABLE made_before (x)")
    backends = open_backends(f"sqlite:///{path}")
    try:
        _history(backends, 10, "old")
        backends.store.db.give_back()  # on such a file: the WAL checkpointed, truncated
        size = path.stat().st_size

        pruned, given = backends.store.free_space(finished_before=200.0, now=300.0)

        assert pruned.checkpoints == 30 and given >= 0
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
            assert raw.execute("PRAGMA freelist_count").fetchone()[0] > 0  # for later rows
        _history(backends, 2, "new")  # written into the freed pages
        backends.store.db.give_back()
        assert path.stat().st_size <= size
    finally:
        backends.close()
