"""Open the store and queue that a database URL names.

`sqlite:///PATH` gives the embedded backends; `postgresql://...` the
PostgreSQL ones (extra `[postgres]`). Store and queue share one database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from homeo.db.url import redact
from homeo.queue.base import Queue, RetryPolicy
from homeo.store.base import Store


class BackendUnavailable(Exception):
    """The backend named by the URL cannot be used here (missing extra or server)."""


@dataclass
class Backends:
    store: Store
    queue: Queue
    url: str
    # The database both live in, when they share one (SQLite, PostgreSQL).
    shared: Any = None
    # Errors of these backends that say "try again later" (locked, unreachable),
    # as opposed to a bug: the worker retries a run that hit one.
    transient: tuple[type[Exception], ...] = ()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Store and queue writes made inside commit together, or not at all, when
        both live in one database; otherwise each write commits on its own."""
        if self.shared is None:
            yield
            return
        with self.shared.write():
            yield

    def close(self) -> None:
        self.queue.close()
        self.store.close()


def open_backends(url: str, retry: RetryPolicy | None = None) -> Backends:
    if url.startswith("sqlite:///"):
        import sqlite3

        from homeo.db.sqlite import SQLiteDatabase, path_from_url
        from homeo.queue.sqlite import SQLiteQueue
        from homeo.store.sqlite import SQLiteStore

        database = SQLiteDatabase(path_from_url(url))
        return Backends(SQLiteStore(database), SQLiteQueue(database, retry), url, database,
                        (sqlite3.OperationalError,))
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg

            from homeo.db.postgres import PostgresDatabase
            from homeo.queue.postgres import PostgresQueue
            from homeo.store.postgres import PostgresStore
        except ImportError as error:
            raise BackendUnavailable(
                f"PostgreSQL support is not installed ({error.name} missing):"
                " pip install 'homeo[postgres]'"
            ) from None
        database = PostgresDatabase(url)
        return Backends(PostgresStore(database), PostgresQueue(database, retry), url, database,
                        (psycopg.OperationalError, BackendUnavailable))
    raise BackendUnavailable(
        f"unknown database URL {redact(url)!r}: use sqlite:///PATH or postgresql://"
    )
