"""The PostgreSQL queue. A claim locks its row with `FOR UPDATE SKIP LOCKED`, so
many workers on many hosts claim side by side, never the same job, and never
wait on each other's rows."""

from __future__ import annotations

import time
from typing import Any

from psycopg.types.json import Jsonb

from homeo.db.postgres import PostgresDatabase
from homeo.ids import new_id
from homeo.queue.base import JOB_STATUSES, Job, Queue, QueueError, RetryPolicy

# The partial indexes hold only the rows a claim looks at: due work and live
# leases. Ids use the "C" collation so ties break in the same order as SQLite.
MIGRATIONS = [
    """
    CREATE TABLE jobs (
        id TEXT COLLATE "C" PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload JSONB NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        run_at DOUBLE PRECISION NOT NULL,
        lease_owner TEXT,
        lease_expires_at DOUBLE PRECISION,
        idempotency_key TEXT,
        last_error TEXT,
        lease_expiries INTEGER NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_due ON jobs (priority DESC, run_at, id) WHERE status = 'queued';
    CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE status = 'leased';
    """,
]

_LEASE_EXPIRED = "lease expired (worker died or stopped heartbeating)"

# A claim in one round trip, as if expired leases were put back in line first
# and then the next due job were leased: `next` is the better of the next
# queued job and the best expired lease (which is then taken over directly);
# `expired` puts every other expired lease back in line. Rows locked by
# another claimer (or a heartbeat) are skipped, not waited for.
_CLAIM = """
WITH queued AS (
    SELECT id, priority, run_at FROM jobs WHERE status = 'queued' AND run_at <= %(now)s
    ORDER BY priority DESC, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
), lapsed AS (
    SELECT id, priority, run_at FROM jobs WHERE status = 'leased' AND lease_expires_at <= %(now)s
    FOR UPDATE SKIP LOCKED
), next AS (
    SELECT id FROM (SELECT * FROM queued UNION ALL SELECT * FROM lapsed) AS candidates
    ORDER BY priority DESC, run_at, id LIMIT 1
), expired AS (
    UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
        lease_expiries = lease_expiries + 1, updated_at = %(now)s, last_error = %(expired)s
    WHERE id IN (SELECT id FROM lapsed) AND id NOT IN (SELECT id FROM next)
)
UPDATE jobs SET status = 'leased', attempts = attempts + 1, lease_owner = %(worker)s,
    lease_expires_at = %(expires)s, updated_at = %(now)s,
    lease_expiries = lease_expiries + CASE WHEN status = 'leased' THEN 1 ELSE 0 END,
    last_error = CASE WHEN status = 'leased' THEN %(expired)s ELSE last_error END
WHERE id = (SELECT id FROM next)
RETURNING *
"""


def _job(row: dict[str, Any] | None) -> Job | None:
    return None if row is None else Job.model_validate(row)


def _clock(now: float | None) -> float:
    return time.time() if now is None else float(now)


class PostgresQueue(Queue):
    def __init__(self, database: PostgresDatabase, retry: RetryPolicy | None = None) -> None:
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
        now = _clock(now)
        # As with runs: a racing enqueue with the same key waits for the first
        # one's commit, does nothing, and then reads the first job.
        for _ in range(3):
            with self.db.transaction() as db:
                row = db.execute(
                    "INSERT INTO jobs (id, tenant_id, kind, payload, priority, status,"
                    " max_attempts, run_at, idempotency_key, created_at, updated_at)"
                    " VALUES (%s, %s, %s, %s, %s, 'queued', %s, %s, %s, %s, %s)"
                    " ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
                    " DO NOTHING RETURNING *",
                    (
                        new_id("job", now),
                        tenant_id,
                        kind,
                        Jsonb(payload),
                        priority,
                        max_attempts,
                        now + delay,
                        idempotency_key,
                        now,
                        now,
                    ),
                ).fetchone()
                if row is not None:
                    return Job.model_validate(row), True
                existing = db.execute(
                    "SELECT * FROM jobs WHERE tenant_id = %s AND idempotency_key = %s",
                    (tenant_id, idempotency_key),
                ).fetchone()
            if existing is not None:
                return Job.model_validate(existing), False
        raise QueueError(f"job with idempotency key {idempotency_key!r} kept vanishing; try again")

    def claim(
        self, worker_id: str, lease_seconds: float, *, now: float | None = None
    ) -> Job | None:
        now = _clock(now)
        params = {"worker": worker_id, "expires": now + lease_seconds, "now": now,
                  "expired": _LEASE_EXPIRED}
        with self.db.connection() as db:
            row = db.execute(_CLAIM, params).fetchone()
        return _job(row)

    def heartbeat(
        self, job_id: str, worker_id: str, lease_seconds: float, *, now: float | None = None
    ) -> bool:
        now = _clock(now)
        with self.db.connection() as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_expires_at = %s, updated_at = %s"
                " WHERE id = %s AND lease_owner = %s AND status = 'leased'",
                (now + lease_seconds, now, job_id, worker_id),
            )
        return cursor.rowcount == 1

    def complete(self, job_id: str, worker_id: str, *, now: float | None = None) -> bool:
        now = _clock(now)
        with self.db.connection() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL,"
                " updated_at = %s WHERE id = %s AND lease_owner = %s AND status = 'leased'",
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
        now = _clock(now)
        with self.db.transaction() as db:
            row = db.execute(
                "SELECT attempts, max_attempts FROM jobs"
                " WHERE id = %s AND lease_owner = %s AND status = 'leased' FOR UPDATE",
                (job_id, worker_id),
            ).fetchone()
            if row is None:
                return None
            if retry and row["attempts"] < row["max_attempts"]:
                status, run_at = "queued", now + self.retry.delay(row["attempts"])
            else:
                status, run_at = "dead", now
            updated = db.execute(
                "UPDATE jobs SET status = %s, run_at = %s, last_error = %s, lease_owner = NULL,"
                " lease_expires_at = NULL, updated_at = %s WHERE id = %s RETURNING *",
                (status, run_at, error, now, job_id),
            ).fetchone()
        return _job(updated)

    def release(self, job_id: str, worker_id: str, *, now: float | None = None) -> bool:
        now = _clock(now)
        with self.db.connection() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'queued', attempts = attempts - 1, run_at = %s,"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = %s"
                " WHERE id = %s AND lease_owner = %s AND status = 'leased'",
                (now, now, job_id, worker_id),
            )
        return cursor.rowcount == 1

    def get(self, tenant_id: str, job_id: str) -> Job | None:
        with self.db.connection() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE tenant_id = %s AND id = %s", (tenant_id, job_id)
            ).fetchone()
        return _job(row)

    def find(self, tenant_id: str, idempotency_key: str) -> Job | None:
        with self.db.connection() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE tenant_id = %s AND idempotency_key = %s",
                (tenant_id, idempotency_key),
            ).fetchone()
        return _job(row)

    def stats(self) -> dict[str, int]:
        # One statement, so the counts and the expiries come from one snapshot.
        with self.db.connection() as db:
            rows = db.execute(
                "SELECT status, COUNT(*) AS n, COALESCE(SUM(lease_expiries), 0) AS expiries"
                " FROM jobs GROUP BY status"
            ).fetchall()
        counts = dict.fromkeys(JOB_STATUSES, 0)
        counts.update({row["status"]: row["n"] for row in rows})
        counts["lease_expiries"] = sum(int(row["expiries"]) for row in rows)
        return counts

    def close(self) -> None:
        self.db.close()
