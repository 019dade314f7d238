"""What the SQL that SQLite and PostgreSQL share (store/sql.py, queue/sql.py)
needs to know about the database it runs on. `SQLiteDatabase` and
`PostgresDatabase` both are one."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any, Protocol


def clock(now: float | None) -> float:
    """`now` if a caller (a test) passed one, else the time."""
    return time.time() if now is None else float(now)


class WouldWait(Exception):  # noqa: N818 - a signal, not a failure
    """A write asked not to wait (`no_waiting`) found the database busy; nothing
    was done. The caller does the write where waiting is fine (a thread)."""


class Dialect(Protocol):
    # The driver's error for a duplicate primary or unique key.
    duplicate_error: type[Exception]
    # ORDER BY for names: byte order on both.
    name_order: str
    # What a SELECT adds to lock the rows it reads inside `write()`.
    for_update: str
    # Whether reads may run on the event loop: they never wait for a writer.
    inline_reads: bool
    # Whether `no_waiting()` can make a write refuse to wait (WouldWait), so that
    # an uncontended write may run on the event loop.
    inline_writes: bool

    def read(self) -> AbstractContextManager[Any]:
        """A connection to read from."""

    def write(self) -> AbstractContextManager[Any]:
        """A connection in one transaction: committed on success, rolled back on error."""

    def snapshot(self) -> AbstractContextManager[Any]:
        """A connection of its own in one read-only transaction that sees one
        snapshot of the database while writers go on (for a backup)."""

    def statement(self) -> AbstractContextManager[Any]:
        """A connection for one writing statement (atomic on its own)."""

    def no_waiting(self) -> AbstractContextManager[None]:
        """Inside, on this thread, a write that would wait for a lock raises
        WouldWait instead, before doing anything."""

    def sql(self, text: str) -> str:
        """`text`, its parameters marked `?`, as the driver marks them."""

    def json_param(self, value: Any) -> Any:
        """`value` as the driver takes a JSON column's value (None stays NULL)."""

    def decode(self, row: Any, json_columns: tuple[str, ...] = ()) -> dict[str, Any]:
        """A row as a dict, its JSON columns decoded."""
