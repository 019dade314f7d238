"""Open the store and queue that a database URL names.

`sqlite:///PATH` gives the embedded backends; `postgresql://...` the
PostgreSQL ones (extra `[postgres]`). Store and queue share one database,
unless a queue URL (`redis://...`, extra `[redis]`) puts the queue elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from homeo.db.url import redact
from homeo.queue.base import Queue, QueueStorage, RetryPolicy
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
    # The store's database (where memory keeps its tables too), shared or not.
    database: Any = None

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


def open_backends(
    url: str, retry: RetryPolicy | None = None, queue_url: str | None = None
) -> Backends:
    """The store at `url`, and the queue in the same database or, given
    `queue_url`, on its own (then `shared` is None: runs and jobs are written
    apart, see engine/submit.py)."""
    if queue_url:
        queue, queue_transient = open_redis_queue(queue_url, retry)
        try:
            store, database, transient = _open_store(url)
        except BaseException:
            queue.close()
            raise
        return Backends(store, queue, url, None, (*queue_transient, *transient), database)
    store, database, transient = _open_store(url)
    return Backends(store, Queue(_queue_beside(url, database), retry), url, database, transient,
                    database)


def _open_store(url: str) -> tuple[Store, Any, tuple[type[Exception], ...]]:
    """The store at `url`, its database, and the errors that mean "try again later" there."""
    if url.startswith("sqlite:///"):
        import sqlite3

        from homeo.db.sqlite import SQLiteDatabase, path_from_url
        from homeo.store.sqlite import SQLiteStore

        database = SQLiteDatabase(path_from_url(url))
        return SQLiteStore(database), database, (sqlite3.OperationalError,)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg

            from homeo.db.postgres import PostgresDatabase
            from homeo.store.postgres import PostgresStore
        except ImportError as error:
            raise BackendUnavailable(
                f"PostgreSQL support is not installed ({error.name} missing):"
                " pip install 'homeo[postgres]'"
            ) from None
        database = PostgresDatabase(url)
        return PostgresStore(database), database, (psycopg.OperationalError, BackendUnavailable)
    raise BackendUnavailable(
        f"unknown database URL {redact(url)!r}: use sqlite:///PATH or postgresql://"
    )


def _queue_beside(url: str, database: Any) -> QueueStorage:
    """The queue storage in the store's own database."""
    if url.startswith("sqlite:///"):
        from homeo.queue.sqlite import SQLiteQueueStorage

        return SQLiteQueueStorage(database)
    from homeo.queue.postgres import PostgresQueueStorage

    return PostgresQueueStorage(database)


def open_redis_queue(
    url: str, retry: RetryPolicy | None = None
) -> tuple[Queue, tuple[type[Exception], ...]]:
    """The queue on the Redis server at `url`, checked to answer, and the errors
    that mean "try again later" there."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise BackendUnavailable(
            f"unknown queue URL {redact(url)!r}: use redis://HOST:PORT/DB (or rediss://),"
            " or leave it unset to keep the queue in the database"
        )
    try:
        import redis

        from homeo.queue.redis import RedisQueueStorage, connect
    except ImportError as error:
        raise BackendUnavailable(
            f"Redis support is not installed ({error.name} missing): pip install 'homeo[redis]'"
        ) from None
    client, prefix = connect(url)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        raise BackendUnavailable(
            f"the Redis queue at {redact(url)} does not answer ({error});"
            " start Redis there or fix the queue URL"
        ) from None
    transient = (redis.ConnectionError, redis.TimeoutError, BackendUnavailable)
    return Queue(RedisQueueStorage(client, prefix), retry), transient
