"""Open the store and queue that a database URL names.

`sqlite:///PATH` gives the embedded backends; `postgresql://...` the
PostgreSQL ones (extra `[postgres]`). Store and queue share one database.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def close(self) -> None:
        self.queue.close()
        self.store.close()


def open_backends(url: str, retry: RetryPolicy | None = None) -> Backends:
    if url.startswith("sqlite:///"):
        from homeo.db.sqlite import SQLiteDatabase, path_from_url
        from homeo.queue.sqlite import SQLiteQueue
        from homeo.store.sqlite import SQLiteStore

        database = SQLiteDatabase(path_from_url(url))
        return Backends(SQLiteStore(database), SQLiteQueue(database, retry), url)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from homeo.db.postgres import PostgresDatabase
            from homeo.queue.postgres import PostgresQueue
            from homeo.store.postgres import PostgresStore
        except ImportError as error:
            raise BackendUnavailable(
                f"PostgreSQL support is not installed ({error.name} missing):"
                " pip install 'homeo[postgres]'"
            ) from None
        database = PostgresDatabase(url)
        return Backends(PostgresStore(database), PostgresQueue(database, retry), url)
    raise BackendUnavailable(
        f"unknown database URL {redact(url)!r}: use sqlite:///PATH or postgresql://"
    )
