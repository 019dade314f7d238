"""SQLite done the datasette way: WAL, one write connection, migrations in order.

Writes go through a single connection guarded by a lock (SQLite allows one
writer at a time anyway; serialising in-process avoids busy-waiting). Reads use
one connection per thread so they never wait behind a write. Several processes
may open the same file: WAL plus `busy_timeout` makes them take turns.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from homeo.db.dialect import WouldWait

BUSY_TIMEOUT_MS = 30_000
# Free pages given back to the filesystem per transaction (`give_back`): each
# moves at most this many pages through the WAL, which is then checkpointed
# and truncated, so giving back needs little room on a nearly full disk.
GIVE_BACK_PAGES = 256


def _busy(error: sqlite3.OperationalError) -> bool:
    """The file's lock is held by another connection (SQLITE_BUSY / LOCKED)."""
    return "locked" in str(error) or "busy" in str(error)


def path_from_url(url: str) -> Path:
    """`sqlite:///relative/or/absolute/path.db` → Path."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r} (expected sqlite:///PATH)")
    return Path(url.removeprefix("sqlite:///"))


def _connect(path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )
    connection.row_factory = sqlite3.Row
    connection.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


class SQLiteDatabase:
    """A SQLite file opened in WAL mode, with `write()` and `read()` contexts.
    It is also a `homeo.db.dialect.Dialect`."""

    duplicate_error = sqlite3.IntegrityError
    name_order = "name"
    for_update = ""  # `write()` already holds the file's write lock
    inline_reads = True  # WAL readers never wait for the writer
    inline_writes = True  # see `no_waiting`

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(self.path)
        # Takes effect only in a file with no tables yet (a new one): pages that
        # deletes free can then go back to the filesystem (`give_back`). An
        # older file keeps its mode (changing it needs a full VACUUM); its free
        # pages are still reused by later writes.
        self._writer.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._writer.execute("PRAGMA journal_mode=WAL")
        # The same file for writes that must not wait (`no_waiting`): it gives up
        # at once when another process holds the file's write lock.
        self._hasty = _connect(self.path, busy_timeout_ms=0)
        # The connection of the write transaction in progress (the patient one
        # when none is), which writes nested in it join.
        self._open = self._writer
        # Re-entrant: a write opened inside another on the same thread joins its
        # transaction, so store and queue writes can commit together (`Backends.atomic`).
        self._write_lock = threading.RLock()
        self._write_depth = 0
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    @contextmanager
    def no_waiting(self) -> Iterator[None]:
        """The first write of this thread inside raises WouldWait rather than wait:
        for the in-process write lock (another thread is writing) or for the
        file's (another process is). Once one write went through, later ones wait
        as usual, so a caller retrying after WouldWait never repeats a write. The
        runner uses it to write on its event loop when that would not wait, and
        in a thread otherwise."""
        self._local.no_waiting = True
        try:
            yield
        finally:
            self._local.no_waiting = False

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction. `BEGIN IMMEDIATE` takes the file's write lock up front,
        so a read-then-write inside it cannot be raced by another process. Opened
        inside another write of this thread, it is part of that transaction."""
        impatient = getattr(self._local, "no_waiting", False)
        if not self._write_lock.acquire(blocking=not impatient):
            raise WouldWait("another thread of this process is writing")
        try:
            if self._write_depth:
                self._write_depth += 1
                try:
                    yield self._open
                finally:
                    self._write_depth -= 1
                return
            connection = self._hasty if impatient else self._writer
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                if impatient and _busy(error):  # another process holds the file's lock
                    raise WouldWait(str(error)) from None
                raise
            self._open, self._write_depth = connection, 1
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            finally:
                self._open, self._write_depth = self._writer, 0
            connection.execute("COMMIT")
            self._local.no_waiting = False
        finally:
            self._write_lock.release()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = _connect(self.path)
            self._local.connection = connection
            with self._readers_lock:
                self._readers.append(connection)
        yield connection

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own in one read transaction: every read inside
        sees the database as of the first one (WAL keeps that snapshot while
        writers go on), so a long read (a backup) is consistent."""
        connection = _connect(self.path)
        try:
            connection.execute("BEGIN")
            try:
                yield connection
            finally:
                connection.execute("ROLLBACK")
        finally:
            connection.close()

    @contextmanager
    def statement(self) -> Iterator[sqlite3.Connection]:
        """The write connection for one statement, atomic on its own (autocommit):
        no BEGIN and COMMIT round trips. Inside a write, part of its transaction.
        Under `no_waiting`, a statement the file's lock refuses raises WouldWait
        (a refused statement did nothing)."""
        impatient = getattr(self._local, "no_waiting", False)
        if not self._write_lock.acquire(blocking=not impatient):
            raise WouldWait("another thread of this process is writing")
        try:
            if self._write_depth or not impatient:
                yield self._open
                return
            try:
                yield self._hasty
            except sqlite3.OperationalError as error:
                if not _busy(error):
                    raise
                raise WouldWait(str(error)) from None
            self._local.no_waiting = False
        finally:
            self._write_lock.release()

    def sql(self, text: str) -> str:
        return text

    def json_param(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def decode(self, row: sqlite3.Row, json_columns: tuple[str, ...] = ()) -> dict[str, Any]:
        record = dict(row)
        for column in json_columns:
            if record.get(column) is not None:
                record[column] = json.loads(record[column])
        return record

    def migrate(self, component: str, migrations: Sequence[str]) -> int:
        """Apply `migrations[i]` for every i not yet recorded for `component`.

        Returns how many were applied. Each migration runs in its own transaction
        together with the row that records it, so a crash never half-applies one.
        """
        with self.write() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " component TEXT NOT NULL, version INTEGER NOT NULL, applied_at REAL NOT NULL,"
                " PRIMARY KEY (component, version))"
            )
        applied = 0
        for version, sql in enumerate(migrations, start=1):
            with self.write() as db:
                done = db.execute(
                    "SELECT 1 FROM schema_migrations WHERE component = ? AND version = ?",
                    (component, version),
                ).fetchone()
                if done:
                    continue
                for statement in _statements(sql):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (component, version, applied_at) VALUES (?, ?, ?)",
                    (component, version, time.time()),
                )
                applied += 1
        return applied

    @contextmanager
    def fast_deletes(self) -> Iterator[None]:
        """Deletes of this thread inside do not overwrite the pages they free
        (`secure_delete=FAST`; this SQLite may overwrite by default), which
        would write as much to the WAL as they free: too much for a nearly full
        disk; and the WAL is checkpointed after each transaction. Follow with
        `give_back()`, which overwrites the freed pages with others or cuts them
        off the file. Other threads' writes wait meanwhile."""
        with self._write_lock:
            before = self._writer.execute("PRAGMA secure_delete").fetchone()[0]
            pages = self._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            self._writer.execute("PRAGMA secure_delete=FAST")
            # Each transaction's pages are checkpointed after it, so the WAL
            # starts over rather than grow by every transaction's.
            self._writer.execute(f"PRAGMA wal_autocheckpoint={GIVE_BACK_PAGES}")
            try:
                yield
            finally:
                self._writer.execute(f"PRAGMA secure_delete={int(before)}")
                self._writer.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")

    def give_back(self) -> int:
        """Return the file's free pages (what deletes left) to the filesystem and
        truncate the WAL; the bytes the files shrank by. Not inside a write. A
        file made before incremental auto-vacuum only has its WAL truncated.
        Never waits for other connections' readers (their WAL frames stay until
        a later checkpoint), and stops early, keeping what it gave, when the disk
        is too full for the next batch's WAL pages."""
        if self._write_depth:
            raise RuntimeError("give_back() cannot run inside a write transaction")
        before = self.files_size()
        incremental = self._writer.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        try:
            while True:
                with self._write_lock:
                    free = self._writer.execute("PRAGMA freelist_count").fetchone()[0]
                    if incremental and free:
                        # executescript steps the pragma to its end (execute
                        # would move one page).
                        self._writer.executescript(
                            f"PRAGMA incremental_vacuum({GIVE_BACK_PAGES})")
                    # The impatient connection: busy at once rather than wait.
                    self._hasty.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                    left = self._writer.execute("PRAGMA freelist_count").fetchone()[0]
                if not incremental or left == 0 or left >= free:
                    break
        except sqlite3.OperationalError as error:
            if "full" not in str(error):
                raise
        return max(before - self.files_size(), 0)

    def files_size(self) -> int:
        """The bytes of the database file and its WAL."""
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(part.stat().st_size for part in (self.path, wal) if part.exists())

    def close(self) -> None:
        """Close every connection. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        with self._readers_lock:
            for connection in self._readers:
                connection.close()
            self._readers.clear()
        self._writer.close()
        self._hasty.close()


def _statements(sql: str) -> list[str]:
    return [part.strip() for part in sql.split(";") if part.strip()]
