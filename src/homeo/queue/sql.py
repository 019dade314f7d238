"""What the SQLite and PostgreSQL queues share: the same SQL, written once with
`?` parameter marks, run on the database's `Dialect` (homeo.db.dialect).

Each backend keeps for itself what the two databases do differently:
enqueueing under an idempotency-key race, and claiming (one `BEGIN IMMEDIATE`
transaction on SQLite, one `SKIP LOCKED` statement on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeo.db.dialect import Dialect, clock
from homeo.queue.base import JOB_STATUSES, Backlog, Job, Queue, RetryPolicy

LEASE_EXPIRED = "lease expired (worker died or stopped heartbeating)"
# How many repeatedly expired jobs `backlog` lists at most.
REPEAT_EXPIRIES_SHOWN = 20



class SQLQueue(Queue):
    def __init__(
        self, database: Dialect, migrations: Sequence[str], retry: RetryPolicy | None = None
    ) -> None:
        self.db = database
        self.retry = retry or RetryPolicy()
        database.migrate("queue", migrations)  # type: ignore[attr-defined]

    def job_of(self, row: Any) -> Job | None:
        return None if row is None else Job.model_validate(self.db.decode(row, ("payload",)))

    def _leased(self, text: str, params: tuple[Any, ...]) -> bool:
        """Run one UPDATE of a job `worker_id` holds; whether it still held it."""
        with self.db.statement() as db:
            return db.execute(self.db.sql(text), params).rowcount == 1

    def heartbeat(
        self, job_id: str, worker_id: str, lease_seconds: float, *, now: float | None = None
    ) -> bool:
        now = clock(now)
        return self._leased(
            "UPDATE jobs SET lease_expires_at = ?, updated_at = ?"
            " WHERE id = ? AND lease_owner = ? AND status = 'leased'",
            (now + lease_seconds, now, job_id, worker_id),
        )

    def complete(self, job_id: str, worker_id: str, *, now: float | None = None) -> bool:
        return self._leased(
            "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL,"
            " updated_at = ? WHERE id = ? AND lease_owner = ? AND status = 'leased'",
            (clock(now), job_id, worker_id),
        )

    def release(self, job_id: str, worker_id: str, *, now: float | None = None) -> bool:
        now = clock(now)
        return self._leased(
            "UPDATE jobs SET status = 'queued', attempts = attempts - 1, run_at = ?,"
            " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
            " WHERE id = ? AND lease_owner = ? AND status = 'leased'",
            (now, now, job_id, worker_id),
        )

    def fail(
        self,
        job_id: str,
        worker_id: str,
        error: str,
        *,
        retry: bool = True,
        delay: float | None = None,
        now: float | None = None,
    ) -> Job | None:
        now = clock(now)
        with self.db.write() as db:
            row = db.execute(
                self.db.sql("SELECT attempts, max_attempts FROM jobs"
                            " WHERE id = ? AND lease_owner = ? AND status = 'leased'")
                + self.db.for_update,
                (job_id, worker_id),
            ).fetchone()
            if row is None:
                return None
            if retry and row["attempts"] < row["max_attempts"]:
                wait = self.retry.delay(row["attempts"]) if delay is None else max(delay, 0.0)
                status, run_at = "queued", now + wait
            else:
                status, run_at = "dead", now
            updated = db.execute(
                self.db.sql(
                    "UPDATE jobs SET status = ?, run_at = ?, last_error = ?, lease_owner = NULL,"
                    " lease_expires_at = NULL, updated_at = ? WHERE id = ? RETURNING *"
                ),
                (status, run_at, error, now, job_id),
            ).fetchone()
        return self.job_of(updated)

    def get(self, tenant_id: str, job_id: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE tenant_id = ? AND id = ?", (tenant_id, job_id))

    def find(self, tenant_id: str, idempotency_key: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE tenant_id = ? AND idempotency_key = ?",
                         (tenant_id, idempotency_key))

    def _one(self, text: str, params: tuple[Any, ...]) -> Job | None:
        with self.db.read() as db:
            return self.job_of(db.execute(self.db.sql(text), params).fetchone())

    def stats(self) -> dict[str, int]:
        # One statement, so the counts and the expiries come from one snapshot.
        with self.db.read() as db:
            rows = db.execute(
                "SELECT status, COUNT(*) AS n, COALESCE(SUM(lease_expiries), 0) AS expiries"
                " FROM jobs GROUP BY status"
            ).fetchall()
        counts = dict.fromkeys(JOB_STATUSES, 0)
        counts.update({row["status"]: row["n"] for row in rows})
        counts["lease_expiries"] = sum(int(row["expiries"]) for row in rows)
        return counts

    def backlog(self, now: float | None = None) -> Backlog:
        now = clock(now)
        with self.db.read() as db:
            due = db.execute(
                self.db.sql("SELECT tenant_id, COUNT(*) AS n, MIN(run_at) AS oldest FROM jobs"
                            " WHERE status = 'queued' AND run_at <= ? GROUP BY tenant_id"),
                (now,),
            ).fetchall()
            leases = db.execute(
                self.db.sql("SELECT lease_owner, lease_expires_at FROM jobs"
                            " WHERE status = 'leased'")
            ).fetchall()
            totals = db.execute(
                "SELECT COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0) AS dead,"
                " COALESCE(SUM(lease_expiries), 0) AS expiries FROM jobs"
            ).fetchone()
            repeated = db.execute(
                self.db.sql("SELECT * FROM jobs WHERE status IN ('queued', 'leased')"
                            " AND lease_expiries >= 2 ORDER BY lease_expiries DESC, id LIMIT ?"),
                (REPEAT_EXPIRIES_SHOWN,),
            ).fetchall()
        by_worker: dict[str, int] = {}
        for row in leases:
            worker = str(row["lease_owner"]).split("#", 1)[0]
            by_worker[worker] = by_worker.get(worker, 0) + 1
        return Backlog(
            due=sum(int(row["n"]) for row in due),
            oldest_due_at=min((float(row["oldest"]) for row in due), default=None),
            leased=len(leases),
            lapsed=sum(1 for row in leases if row["lease_expires_at"] <= now),
            dead=int(totals["dead"]),
            lease_expiries=int(totals["expiries"]),
            due_by_tenant={row["tenant_id"]: int(row["n"]) for row in due},
            leases_by_worker=by_worker,
            repeat_expiries=[job for row in repeated if (job := self.job_of(row)) is not None],
        )

    def close(self) -> None:
        self.db.close()  # type: ignore[attr-defined]
