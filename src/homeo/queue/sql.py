"""What the SQLite and PostgreSQL queue storages share: the same SQL, written once with
`?` parameter marks, run on the database's `Dialect` (homeo.db.dialect).

Each backend keeps for itself what the two databases do differently:
enqueueing under an idempotency-key race, and claiming (one `BEGIN IMMEDIATE`
transaction on SQLite, one `SKIP LOCKED` statement on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeo.db.dialect import Dialect
from homeo.queue.base import JOB_STATUSES, REPEAT_EXPIRIES_SHOWN, Backlog, Job, QueueStorage

HELD = "id = ? AND lease_owner = ? AND status = 'leased'"


class SQLQueueStorage(QueueStorage):
    def __init__(self, database: Dialect, migrations: Sequence[str]) -> None:
        self.db = database
        database.migrate("queue", migrations)  # type: ignore[attr-defined]

    def job_of(self, row: Any) -> Job | None:
        return None if row is None else Job.model_validate(self.db.decode(row, ("payload",)))

    def _leased(self, text: str, params: tuple[Any, ...]) -> bool:
        """Run one UPDATE of a job `worker_id` holds; whether it still held it."""
        with self.db.statement() as db:
            return db.execute(self.db.sql(text), params).rowcount == 1

    def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float, now: float) -> bool:
        return self._leased(
            f"UPDATE jobs SET lease_expires_at = ?, updated_at = ? WHERE {HELD}",
            (now + lease_seconds, now, job_id, worker_id),
        )

    def complete(self, job_id: str, worker_id: str, now: float) -> bool:
        return self._leased(
            "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL,"
            f" updated_at = ? WHERE {HELD}",
            (now, job_id, worker_id),
        )

    def release(self, job_id: str, worker_id: str, now: float, run_at: float | None = None
                ) -> bool:
        return self._leased(
            "UPDATE jobs SET status = 'queued', attempts = attempts - 1, run_at = ?,"
            f" lease_owner = NULL, lease_expires_at = NULL, updated_at = ? WHERE {HELD}",
            (now if run_at is None else run_at, now, job_id, worker_id),
        )

    def expire_leases(self, worker_id: str, now: float) -> int:
        owners = f"{worker_id}#"
        with self.db.statement() as db:
            return db.execute(
                self.db.sql("UPDATE jobs SET lease_expires_at = ? WHERE status = 'leased'"
                            " AND lease_expires_at > ? AND substr(lease_owner, 1, ?) = ?"),
                (now, now, len(owners), owners),
            ).rowcount

    def leased(self, job_id: str, worker_id: str) -> Job | None:
        return self._one(f"SELECT * FROM jobs WHERE {HELD}", (job_id, worker_id))

    def requeue(
        self, job_id: str, worker_id: str, attempts: int, error: str, run_at: float, now: float
    ) -> Job | None:
        return self._settle("queued", run_at, error, now, job_id, worker_id, attempts)

    def dead_letter(
        self, job_id: str, worker_id: str, attempts: int, error: str, now: float
    ) -> Job | None:
        return self._settle("dead", now, error, now, job_id, worker_id, attempts)

    def _settle(self, status: str, run_at: float, error: str, now: float, job_id: str,
                worker_id: str, attempts: int) -> Job | None:
        with self.db.statement() as db:
            row = db.execute(
                self.db.sql(
                    "UPDATE jobs SET status = ?, run_at = ?, last_error = ?, lease_owner = NULL,"
                    f" lease_expires_at = NULL, updated_at = ? WHERE {HELD} AND attempts = ?"
                    " RETURNING *"
                ),
                (status, run_at, error, now, job_id, worker_id, attempts),
            ).fetchone()
        return self.job_of(row)

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

    def ping(self) -> None:
        with self.db.read() as db:
            db.execute("SELECT 1").fetchone()

    def backlog(self, now: float) -> Backlog:
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
                self.db.sql("SELECT * FROM jobs WHERE (status IN ('queued', 'leased')"
                            " AND lease_expiries >= 2) OR (status = 'leased'"
                            " AND lease_expiries = 1) ORDER BY lease_expiries DESC, id LIMIT ?"),
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
