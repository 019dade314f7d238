"""The PostgreSQL queue. A claim locks its row with `FOR UPDATE SKIP LOCKED`, so
many workers on many hosts claim side by side, never the same job, and never
wait on each other's rows. Within a priority, the tenant served longest ago
goes first (see `_NEXT`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeo.db.postgres import PostgresDatabase
from homeo.ids import new_id
from homeo.queue.base import LEASE_EXPIRED, Job, QueueError
from homeo.queue.sql import SQLQueueStorage

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
    # Per-tenant fairness: `served` numbers claims from one sequence, so a
    # tenant's MAX(served) says when it was last served (no row shared by a
    # tenant's claims, so concurrent claims never wait on one another);
    # `queue_tenants` lists every tenant that ever enqueued.
    """
    ALTER TABLE jobs ADD COLUMN served BIGINT;
    CREATE SEQUENCE queue_served;
    CREATE TABLE queue_tenants (tenant_id TEXT PRIMARY KEY);
    INSERT INTO queue_tenants (tenant_id) SELECT DISTINCT tenant_id FROM jobs;
    CREATE INDEX jobs_tenant_due ON jobs (tenant_id, priority DESC, run_at, id)
        WHERE status = 'queued';
    CREATE INDEX jobs_tenant_served ON jobs (tenant_id, served);
    """,
]

# How many of each tenant's best due jobs a claim considers: rows other
# claimers hold (or leased since the statement began) are skipped, so this
# must stay above the number of concurrent claimers.
CANDIDATES_PER_TENANT = 32

# A claim in one round trip, as if expired leases were put back in line first
# and then the next due job were leased: `next` is the better of the next
# queued job and the best expired lease (which is then taken over directly);
# `expired` puts every other expired lease back in line. Rows locked by
# another claimer (or a heartbeat) are skipped, not waited for. `{not_done}`
# keeps a fused complete-and-claim from touching the row it just completed.
#
# Fairness: `ahead` takes each tenant's first due jobs (one index probe per
# tenant), and `queued` orders those few by priority, then by when their tenant
# was last served, and locks the first it can. It finds them by ctid (a Tid
# scan) so that the cost stays with the candidates, not the whole backlog;
# `IS TRUE` keeps the planner from proving the partial `jobs_due` index usable
# and walking it over every due job (as it would on a table not yet analyzed).
# A row claimed since the statement's snapshot fails that recheck after the
# lock and is skipped.
_NEXT = """
ahead AS MATERIALIZED (
    SELECT best.ctid FROM queue_tenants AS t CROSS JOIN LATERAL (
        SELECT ctid FROM jobs
        WHERE tenant_id = t.tenant_id AND status = 'queued' AND run_at <= %(now)s
        ORDER BY priority DESC, run_at, id LIMIT {candidates}) AS best
), queued AS (
    SELECT id, priority, (SELECT COALESCE(MAX(s.served), 0) FROM jobs AS s
                          WHERE s.tenant_id = jobs.tenant_id) AS served, run_at
    FROM jobs WHERE ctid = ANY(ARRAY(SELECT ctid FROM ahead))
        AND (status = 'queued' AND run_at <= %(now)s) IS TRUE
    ORDER BY priority DESC, served, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
), lapsed AS (
    SELECT id, priority, (SELECT COALESCE(MAX(s.served), 0) FROM jobs AS s
                          WHERE s.tenant_id = jobs.tenant_id) AS served, run_at
    FROM jobs WHERE status = 'leased' AND lease_expires_at <= %(now)s
    {not_done} FOR UPDATE SKIP LOCKED
), next AS (
    SELECT id FROM (SELECT * FROM queued UNION ALL SELECT * FROM lapsed) AS candidates
    ORDER BY priority DESC, served, run_at, id LIMIT 1
), expired AS (
    UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
        lease_expiries = lease_expiries + 1, updated_at = %(now)s, last_error = %(expired)s
    WHERE id IN (SELECT id FROM lapsed) AND id NOT IN (SELECT id FROM next)
)"""
_LEASE_NEXT = """
UPDATE jobs SET status = 'leased', attempts = attempts + 1, lease_owner = %(worker)s,
    lease_expires_at = %(expires)s, updated_at = %(now)s, served = nextval('queue_served'),
    lease_expiries = lease_expiries + CASE WHEN status = 'leased' THEN 1 ELSE 0 END,
    last_error = CASE WHEN status = 'leased' THEN %(expired)s ELSE last_error END
WHERE id = (SELECT id FROM next)
RETURNING *"""
_CLAIM = "WITH" + _NEXT.format(not_done="", candidates=CANDIDATES_PER_TENANT) + _LEASE_NEXT

# Complete a job and claim the next in one statement: one round trip and one
# commit where `complete` then `claim` take two of each. A snapshot is shared by
# the whole statement, so the claim cannot see the completed job as done: it
# would see a lapsed lease, so `lapsed` leaves out what `done` completed (and
# only that: a job whose completion was refused is still fair game).
_COMPLETE_AND_CLAIM = """
WITH done AS (
    UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL,
        updated_at = %(now)s
    WHERE id = %(done)s AND lease_owner = %(done_owner)s AND status = 'leased'
    RETURNING id
), """ + _NEXT.format(not_done="AND id NOT IN (SELECT id FROM done)",
                    candidates=CANDIDATES_PER_TENANT).lstrip() + """,
claimed AS (""" + _LEASE_NEXT + """)
SELECT (SELECT COUNT(*) FROM done) AS completed, claimed.*
FROM (SELECT 1) AS one LEFT JOIN claimed ON TRUE
"""

# Up to %(n)s claims in one statement, leased as claims one after another
# would lease them, but for one thing: `ranked` numbers each tenant's
# candidates of each priority (`turn`), so within a priority a batch goes
# round the tenants (each one's first job, then each one's second) in the
# order of when each was last served before the batch; claims one after
# another would also count the batch's own earlier claims. Each row gets its
# own lease owner, `owners[k]` for the k-th job taken.
_CLAIM_BATCH = """
WITH ahead AS MATERIALIZED (
    SELECT best.ctid FROM queue_tenants AS t CROSS JOIN LATERAL (
        SELECT ctid FROM jobs
        WHERE tenant_id = t.tenant_id AND status = 'queued' AND run_at <= %(now)s
        ORDER BY priority DESC, run_at, id LIMIT {candidates}) AS best
), ranked AS MATERIALIZED (
    SELECT ctid, id, priority, run_at,
        (SELECT COALESCE(MAX(s.served), 0) FROM jobs AS s
         WHERE s.tenant_id = jobs.tenant_id) AS served,
        row_number() OVER (PARTITION BY tenant_id, priority ORDER BY run_at, id) AS turn
    FROM jobs WHERE ctid = ANY(ARRAY(SELECT ctid FROM ahead))
        AND (status = 'queued' AND run_at <= %(now)s) IS TRUE
), queued AS (
    SELECT r.id, r.priority, r.turn, r.served, r.run_at
    FROM jobs AS j JOIN ranked AS r ON r.id = j.id
    WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM ranked))
        AND (j.status = 'queued' AND j.run_at <= %(now)s) IS TRUE
    ORDER BY r.priority DESC, r.turn, r.served, r.run_at, r.id
    LIMIT %(n)s FOR UPDATE OF j SKIP LOCKED
), lapsed AS (
    SELECT id, priority, 1::bigint AS turn, (SELECT COALESCE(MAX(s.served), 0) FROM jobs AS s
                          WHERE s.tenant_id = jobs.tenant_id) AS served, run_at
    FROM jobs WHERE status = 'leased' AND lease_expires_at <= %(now)s FOR UPDATE SKIP LOCKED
), taken AS (
    SELECT id, row_number() OVER (ORDER BY priority DESC, turn, served, run_at, id) AS k
    FROM (SELECT * FROM queued UNION ALL SELECT * FROM lapsed) AS candidates
    ORDER BY k LIMIT %(n)s
), next AS (
    -- Numbers from queue_served in the batch's order, as claims one after
    -- another would take them (the scan of `taken` is in order of k).
    SELECT id, k, nextval('queue_served') AS served FROM taken
), expired AS (
    UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
        lease_expiries = lease_expiries + 1, updated_at = %(now)s, last_error = %(expired)s
    WHERE id IN (SELECT id FROM lapsed) AND id NOT IN (SELECT id FROM next)
)
UPDATE jobs SET status = 'leased', attempts = attempts + 1,
    lease_owner = (%(owners)s::text[])[next.k], lease_expires_at = %(expires)s,
    updated_at = %(now)s, served = next.served,
    lease_expiries = lease_expiries + CASE WHEN status = 'leased' THEN 1 ELSE 0 END,
    last_error = CASE WHEN status = 'leased' THEN %(expired)s ELSE last_error END
FROM next WHERE jobs.id = next.id
RETURNING jobs.*, next.k""".format(candidates=CANDIDATES_PER_TENANT)

_COMPLETE_BATCH = """
UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL,
    updated_at = %(now)s
FROM unnest(%(ids)s::text[], %(owners)s::text[]) AS done(id, owner)
WHERE jobs.id = done.id AND jobs.lease_owner = done.owner AND jobs.status = 'leased'
RETURNING jobs.id"""


class PostgresQueueStorage(SQLQueueStorage):
    db: PostgresDatabase

    def __init__(self, database: PostgresDatabase) -> None:
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
        # As with runs: a racing enqueue with the same key waits for the first
        # one's commit, does nothing, and then reads the first job.
        for _ in range(3):
            with self.db.transaction() as db:
                db.execute("INSERT INTO queue_tenants (tenant_id) VALUES (%s)"
                           " ON CONFLICT DO NOTHING", (tenant_id,))
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
                        self.db.json_param(payload),
                        priority,
                        max_attempts,
                        now + delay,
                        idempotency_key,
                        now,
                        now,
                    ),
                ).fetchone()
                if row is not None:
                    return self.job_of(row), True
                existing = db.execute(
                    "SELECT * FROM jobs WHERE tenant_id = %s AND idempotency_key = %s",
                    (tenant_id, idempotency_key),
                ).fetchone()
            if existing is not None:
                return self.job_of(existing), False
        raise QueueError(f"job with idempotency key {idempotency_key!r} kept vanishing; try again")

    def claim(self, worker_id: str, lease_seconds: float, now: float) -> Job | None:
        params = {"worker": worker_id, "expires": now + lease_seconds, "now": now,
                  "expired": LEASE_EXPIRED}
        with self.db.connection() as db:
            row = db.execute(_CLAIM, params).fetchone()
        return self.job_of(row)

    def complete_and_claim(self, job_id: str, worker_id: str, claimer: str,
                           lease_seconds: float, now: float) -> tuple[bool, Job | None]:
        params = {"worker": claimer, "expires": now + lease_seconds, "now": now,
                  "expired": LEASE_EXPIRED, "done": job_id, "done_owner": worker_id}
        with self.db.connection() as db:
            row = db.execute(_COMPLETE_AND_CLAIM, params).fetchone()
        completed = bool(row.pop("completed"))
        return completed, None if row["id"] is None else self.job_of(row)

    def claim_batch(self, owners: Sequence[str], lease_seconds: float, now: float
                    ) -> list[Job]:
        params = {"owners": list(owners), "n": len(owners), "expires": now + lease_seconds,
                  "now": now, "expired": LEASE_EXPIRED}
        with self.db.connection() as db:
            rows = db.execute(_CLAIM_BATCH, params).fetchall()
        ordered = sorted(rows, key=lambda row: row.pop("k"))
        return [job for row in ordered if (job := self.job_of(row)) is not None]

    def complete_batch(self, done: Sequence[tuple[str, str]], now: float) -> list[bool]:
        params = {"ids": [job_id for job_id, _ in done],
                  "owners": [owner for _, owner in done], "now": now}
        with self.db.connection() as db:
            completed = {row["id"] for row in db.execute(_COMPLETE_BATCH, params).fetchall()}
        return [job_id in completed for job_id, _ in done]
