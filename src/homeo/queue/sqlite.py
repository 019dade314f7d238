"""The SQLite queue. Every claim is one `UPDATE ... RETURNING` inside
`BEGIN IMMEDIATE`, so two processes can never lease the same job."""

from __future__ import annotations

from typing import Any

from homeo.db.sqlite import SQLiteDatabase
from homeo.ids import new_id
from homeo.queue.base import LEASE_EXPIRED, Job
from homeo.queue.sql import SQLQueueStorage

MIGRATIONS = [
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        run_at REAL NOT NULL,
        lease_owner TEXT,
        lease_expires_at REAL,
        idempotency_key TEXT,
        last_error TEXT,
        lease_expiries INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_due ON jobs (status, priority DESC, run_at, id);
    CREATE INDEX jobs_leases ON jobs (status, lease_expires_at)
    """,
]



class SQLiteQueueStorage(SQLQueueStorage):
    db: SQLiteDatabase

    def __init__(self, database: SQLiteDatabase) -> None:
        super().__init__(database, MIGRATIONS)

    def enqueue(
        self,
        tenant_id: str,
        kind: str,
        payload: dict[str, Any],
        *,
        priority: int,
        delay: float,
        idempotency_key: str | None,
        max_attempts: int,
        now: float,
    ) -> tuple[Job, bool]:
        with self.db.write() as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT * FROM jobs WHERE tenant_id = ? AND idempotency_key = ?",
                    (tenant_id, idempotency_key),
                ).fetchone()
                if row is not None:
                    return self.job_of(row), False  # type: ignore[return-value]
            row = db.execute(
                "INSERT INTO jobs (id, tenant_id, kind, payload, priority, status, max_attempts,"
                " run_at, idempotency_key, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?) RETURNING *",
                (
                    new_id("job", now),
                    tenant_id,
                    kind,
                    self.db.json_param(payload),
                    priority,
                    max_attempts,
                    now + delay,
                    idempotency_key,
                    now,
                    now,
                ),
            ).fetchone()
        return self.job_of(row), True  # type: ignore[return-value]

    def claim(self, worker_id: str, lease_seconds: float, now: float) -> Job | None:
        with self.db.write() as db:
            db.execute(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,"
                " lease_expiries = lease_expiries + 1, updated_at = ?, last_error = ?"
                " WHERE status = 'leased' AND lease_expires_at <= ?",
                (now, LEASE_EXPIRED, now),
            )
            row = db.execute(
                "UPDATE jobs SET status = 'leased', attempts = attempts + 1, lease_owner = ?,"
                " lease_expires_at = ?, updated_at = ?"
                " WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND run_at <= ?"
                "             ORDER BY priority DESC, run_at, id LIMIT 1)"
                " RETURNING *",
                (worker_id, now + lease_seconds, now, now),
            ).fetchone()
        return self.job_of(row)
