"""The SQLite queue. Every claim is one `UPDATE ... RETURNING` inside
`BEGIN IMMEDIATE`, so two processes can never lease the same job."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from homeo.db.sqlite import SQLiteDatabase
from homeo.ids import new_id
from homeo.queue.base import JOB_STATUSES, Job, Queue, RetryPolicy

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


def _job(row: sqlite3.Row | None) -> Job | None:
    if row is None:
        return None
    record = dict(row)
    record["payload"] = json.loads(record["payload"])
    return Job.model_validate(record)


class SQLiteQueue(Queue):
    def __init__(self, database: SQLiteDatabase, retry: RetryPolicy | None = None) -> None:
        self.db = database
        self.retry = retry or RetryPolicy()
        self.db.migrate("queue", MIGRATIONS)

    def enqueue(
        self,
        tenant_id: str,
        kind: str,
        payload: dict[str, Any],
        *,
        priority: int = 0,
        delay: float = 0.0,
        idempotency_key: str | None = None,
        max_attempts: int = 3,
        now: float | None = None,
    ) -> tuple[Job, bool]:
        now = time.time() if now is None else now
        with self.db.write() as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT * FROM jobs WHERE tenant_id = ? AND idempotency_key = ?",
                    (tenant_id, idempotency_key),
                ).fetchone()
                if row is not None:
                    return _job(row), False  # type: ignore[return-value]
            row = db.execute(
                "INSERT INTO jobs (id, tenant_id, kind, payload, priority, status, max_attempts,"
                " run_at, idempotency_key, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?) RETURNING *",
                (
                    new_id("job", now),
                    tenant_id,
                    kind,
                    json.dumps(payload),
                    priority,
                    max_attempts,
                    now + delay,
                    idempotency_key,
                    now,
                    now,
                ),
            ).fetchone()
        return _job(row), True  # type: ignore[return-value]

    def claim(self, worker_id: str, lease_seconds: float, *, now: float | None = None) -> Job | None:
        now = time.time() if now is None else now
        with self.db.write() as db:
            db.execute(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,"
                " lease_expiries = lease_expiries + 1, updated_at = ?,"
                " last_error = 'lease expired (worker died or stopped heartbeating)'"
                " WHERE status = 'leased' AND lease_expires_at <= ?",
                (now, now),
            )
            row = db.execute(
                "UPDATE jobs SET status = 'leased', attempts = attempts + 1, lease_owner = ?,"
                " lease_expires_at = ?, updated_at = ?"
                " WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND run_at <= ?"
                "             ORDER BY priority DESC, run_at, id LIMIT 1)"
                " RETURNING *",
                (worker_id, now + lease_seconds, now, now),
            ).fetchone()
        return _job(row)

    def heartbeat(
        self, job_id: str, worker_id: str, lease_seconds: float, *, now: float | None = None
    ) -> bool:
        now = time.time() if now is None else now
        with self.db.write() as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_expires_at = ?, updated_at = ?"
                " WHERE id = ? AND lease_owner = ? AND status = 'leased'",
                (now + lease_seconds, now, job_id, worker_id),
            )
        return cursor.rowcount == 1

    def complete(self, job_id: str, worker_id: str, *, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self.db.write() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL,"
                " updated_at = ? WHERE id = ? AND lease_owner = ? AND status = 'leased'",
                (now, job_id, worker_id),
            )
        return cursor.rowcount == 1

    def fail(
        self,
        job_id: str,
        worker_id: str,
        error: str,
        *,
        retry: bool = True,
        now: float | None = None,
    ) -> Job | None:
        now = time.time() if now is None else now
        with self.db.write() as db:
            row = db.execute(
                "SELECT attempts, max_attempts FROM jobs"
                " WHERE id = ? AND lease_owner = ? AND status = 'leased'",
                (job_id, worker_id),
            ).fetchone()
            if row is None:
                return None
            if retry and row["attempts"] < row["max_attempts"]:
                status, run_at = "queued", now + self.retry.delay(row["attempts"])
            else:
                status, run_at = "dead", now
            updated = db.execute(
                "UPDATE jobs SET status = ?, run_at = ?, last_error = ?, lease_owner = NULL,"
                " lease_expires_at = NULL, updated_at = ? WHERE id = ? RETURNING *",
                (status, run_at, error, now, job_id),
            ).fetchone()
        return _job(updated)

    def release(self, job_id: str, worker_id: str, *, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self.db.write() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'queued', attempts = attempts - 1, run_at = ?,"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                " WHERE id = ? AND lease_owner = ? AND status = 'leased'",
                (now, now, job_id, worker_id),
            )
        return cursor.rowcount == 1

    def get(self, tenant_id: str, job_id: str) -> Job | None:
        with self.db.read() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE tenant_id = ? AND id = ?", (tenant_id, job_id)
            ).fetchone()
        return _job(row)

    def find(self, tenant_id: str, idempotency_key: str) -> Job | None:
        with self.db.read() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE tenant_id = ? AND idempotency_key = ?",
                (tenant_id, idempotency_key),
            ).fetchone()
        return _job(row)

    def stats(self) -> dict[str, int]:
        with self.db.read() as db:
            rows = db.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
            expiries = db.execute("SELECT COALESCE(SUM(lease_expiries), 0) FROM jobs").fetchone()[0]
        counts = dict.fromkeys(JOB_STATUSES, 0)
        counts.update({row["status"]: row["n"] for row in rows})
        counts["lease_expiries"] = expiries
        return counts

    def close(self) -> None:
        self.db.close()
