"""The SQLite queue. Every claim is one `UPDATE ... RETURNING` inside
`BEGIN IMMEDIATE`, so two processes can never lease the same job. Within a
priority, the tenant served longest ago goes first (see `_NEXT`)."""

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
    # Per-tenant fairness: `served` is the claim's number in one sequence, so
    # a tenant's MAX(served) says when it was last served; `queue_tenants`
    # lists every tenant that ever enqueued, for a claim to visit each.
    """
    ALTER TABLE jobs ADD COLUMN served INTEGER;
    CREATE TABLE queue_tenants (tenant_id TEXT PRIMARY KEY);
    INSERT OR IGNORE INTO queue_tenants (tenant_id) SELECT DISTINCT tenant_id FROM jobs;
    CREATE INDEX jobs_tenant_due ON jobs (tenant_id, status, priority DESC, run_at, id);
    CREATE INDEX jobs_tenant_served ON jobs (tenant_id, served);
    CREATE INDEX jobs_served ON jobs (served)
    """,
]

# The most urgent due job: each tenant's best (highest priority, then oldest
# run_at, then lowest id), then of those the highest priority, then the tenant
# served longest ago, then run_at, then id. One index probe per tenant.
_NEXT = """
SELECT best.id FROM queue_tenants AS t
JOIN jobs AS best ON best.id = (
    SELECT id FROM jobs WHERE tenant_id = t.tenant_id AND status = 'queued' AND run_at <= ?
    ORDER BY priority DESC, run_at, id LIMIT 1)
ORDER BY best.priority DESC,
    (SELECT COALESCE(MAX(served), 0) FROM jobs WHERE tenant_id = t.tenant_id),
    best.run_at, best.id
LIMIT 1
"""



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
            db.execute("INSERT OR IGNORE INTO queue_tenants (tenant_id) VALUES (?)", (tenant_id,))
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
                " lease_expires_at = ?, updated_at = ?,"
                " served = (SELECT COALESCE(MAX(served), 0) + 1 FROM jobs)"
                f" WHERE id = ({_NEXT}) RETURNING *",
                (worker_id, now + lease_seconds, now, now),
            ).fetchone()
        return self.job_of(row)
