"""PostgreSQL: a small connection pool, transactions and migrations in order.

Connections run in autocommit mode: `connection()` serves work that is one
statement, and `transaction()` wraps several in an explicit BEGIN/COMMIT, so
no connection ever sits idle inside a transaction. Several processes may
migrate the same schema at once: a transaction-scoped advisory lock per schema
makes them take turns.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from homeo.backends import BackendUnavailable
from homeo.db.dialect import WouldWait
from homeo.db.url import redact, redact_text

CONNECT_TIMEOUT_SECONDS = 10
ACQUIRE_TIMEOUT_SECONDS = 30.0

# One lock per schema, so migrators of different schemas never wait on each other.
_MIGRATION_LOCK = (
    "SELECT pg_advisory_xact_lock("
    "hashtextextended('homeo.migrate:' || COALESCE(current_schema(), ''), 0))"
)


class PostgresUnavailable(BackendUnavailable):
    """The PostgreSQL server named by the URL cannot be reached or refused us."""


@functools.cache
def _psycopg_marks(text: str) -> str:
    """Parameters marked `?` marked as psycopg marks them, `%s` (the shared SQL
    has no other `%` or `?`)."""
    return text.replace("?", "%s")


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database (and search_path).
    It is also a `homeo.db.dialect.Dialect`."""

    duplicate_error = psycopg.errors.UniqueViolation
    name_order = 'name COLLATE "C"'
    for_update = " FOR UPDATE"
    inline_reads = False  # a read is a network round trip: never on the event loop
    inline_writes = False  # so are writes

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        connect_timeout: int = CONNECT_TIMEOUT_SECONDS,
        acquire_timeout: float = ACQUIRE_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        self.acquire_timeout = acquire_timeout
        # One direct connection first: it fails fast and says why (refused,
        # bad password, no such database), where a pool would only time out.
        try:
            psycopg.connect(url, connect_timeout=connect_timeout).close()
        except psycopg.Error as error:
            raise PostgresUnavailable(
                f"cannot connect to PostgreSQL at {redact(url)}:"
                f" {redact_text(_first_line(error), url)}."
                " Check that the server is running and reachable from here, and that"
                " the host, port, user, password and database in the URL are right."
            ) from None
        self._pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=False,
            name="homeo",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout:
            self._pool.close()
            raise PostgresUnavailable(
                f"PostgreSQL at {redact(url)} accepted one connection but the pool could"
                f" not open {min_size} within {connect_timeout}s: check max_connections"
                " and the server's load."
            ) from None
        self._closed = False
        # The connection of the transaction this thread has open, if any: work
        # started inside it joins it (`Backends.atomic`).
        self._local = threading.local()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection in autocommit mode: each statement is its own
        transaction. For work that is one statement, this saves the BEGIN and
        COMMIT round trips. Rows come back as dicts."""
        if self._closed:
            raise PostgresUnavailable(f"the database {redact(self.url)} was closed")
        joined = getattr(self._local, "transaction", None)
        if joined is not None:
            yield joined
            return
        # Only taking a connection can time out: the body never waits on the pool.
        try:
            with self._pool.connection(timeout=self.acquire_timeout) as connection:
                yield connection
        except PoolTimeout:
            raise PostgresUnavailable(
                f"no connection to PostgreSQL at {redact(self.url)} within"
                f" {self.acquire_timeout}s: the server may be down, or all"
                f" {self._pool.max_size} pooled connections are busy."
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection inside a transaction: committed on success, rolled back
        on any exception. Rows come back as dicts. Opened inside another
        transaction of this thread, it is a savepoint of that one."""
        joined = getattr(self._local, "transaction", None)
        if joined is not None:
            with joined.transaction():
                yield joined
            return
        with self.connection() as connection, connection.transaction():
            self._local.transaction = connection
            try:
                yield connection
            finally:
                self._local.transaction = None

    def read(self) -> AbstractContextManager[psycopg.Connection[dict[str, Any]]]:
        return self.connection()

    def write(self) -> AbstractContextManager[psycopg.Connection[dict[str, Any]]]:
        return self.transaction()

    @contextmanager
    def snapshot(self) -> Iterator[_SnapshotReader]:
        """A connection in one REPEATABLE READ, READ ONLY transaction: every
        read inside sees the database as of the first one, while writers go
        on. Its `execute` reads through a server-side cursor, so a long result
        (a backup's vectors) is fetched in batches, never all at once."""
        with self.connection() as connection:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield _SnapshotReader(connection)
            finally:
                connection.execute("ROLLBACK")

    def statement(self) -> AbstractContextManager[psycopg.Connection[dict[str, Any]]]:
        return self.connection()  # autocommit: no BEGIN and COMMIT round trips

    def no_waiting(self) -> AbstractContextManager[None]:
        """Every write is a network round trip, which may wait: refuse at once."""
        raise WouldWait("PostgreSQL writes go through a thread")

    def sql(self, text: str) -> str:
        return _psycopg_marks(text)

    def json_param(self, value: Any) -> Jsonb | None:
        return None if value is None else Jsonb(value)

    def decode(self, row: dict[str, Any], json_columns: tuple[str, ...] = ()) -> dict[str, Any]:
        return row  # JSONB comes back decoded

    def migrate(self, component: str, migrations: Sequence[str]) -> int:
        """Apply `migrations[i]` for every i not yet recorded for `component`.

        Returns how many were applied. Each migration runs in one transaction
        together with the row that records it, so a crash never half-applies one.
        """
        with self.transaction() as db:
            db.execute(_MIGRATION_LOCK)
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " component TEXT NOT NULL, version INTEGER NOT NULL,"
                " applied_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (component, version))"
            )
        applied = 0
        for version, sql in enumerate(migrations, start=1):
            with self.transaction() as db:
                db.execute(_MIGRATION_LOCK)
                done = db.execute(
                    "SELECT 1 FROM schema_migrations WHERE component = %s AND version = %s",
                    (component, version),
                ).fetchone()
                if done:
                    continue
                # Without parameters psycopg sends the text as is, so one migration
                # may hold several statements.
                db.execute(sql)  # type: ignore[arg-type]
                db.execute(
                    "INSERT INTO schema_migrations (component, version, applied_at)"
                    " VALUES (%s, %s, %s)",
                    (component, version, time.time()),
                )
                applied += 1
        return applied

    def close(self) -> None:
        """Close every pooled connection. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._pool.close()


class _SnapshotReader:
    """`execute` as a connection's, through a named (server-side) cursor."""

    def __init__(self, connection: psycopg.Connection[dict[str, Any]]) -> None:
        self._connection = connection
        self._cursors = 0

    def execute(self, query: str, params: Sequence[Any] = ()) -> Any:
        self._cursors += 1
        cursor = self._connection.cursor(name=f"homeo_snapshot_{self._cursors}")
        cursor.itersize = 1000
        cursor.execute(query, params)  # type: ignore[arg-type]
        return cursor


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
