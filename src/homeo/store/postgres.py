"""The PostgreSQL store: the same semantics as the SQLite one, for several hosts.

Writes check their preconditions inside the statement (`ON CONFLICT`,
`WHERE status = ...`), so concurrent callers need no table locks. Work of one
statement runs on an autocommit connection; work of several in a transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from homeo.db.postgres import PostgresDatabase
from homeo.ids import new_id
from homeo.store.base import Store, StoreError
from homeo.store.models import (
    FINAL_STATUSES,
    AgentRecord,
    ApiKey,
    NewRun,
    Run,
    Step,
    UsageEvent,
    UsageTotals,
)

# Ids sort by creation time byte for byte; the "C" collation keeps that order
# whatever the database's locale is.
MIGRATIONS = [
    """
    CREATE TABLE runs (
        id TEXT COLLATE "C" PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        input TEXT NOT NULL,
        status TEXT NOT NULL,
        output TEXT,
        error TEXT,
        idempotency_key TEXT,
        request_id TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        checkpoint JSONB,
        input_tokens BIGINT NOT NULL DEFAULT 0,
        output_tokens BIGINT NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX runs_idempotency ON runs (tenant_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX runs_tenant_id ON runs (tenant_id, id);
    CREATE INDEX runs_tenant_status ON runs (tenant_id, status, id);
    CREATE TABLE steps (
        run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        tenant_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        input JSONB,
        output JSONB,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 1,
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION,
        input_tokens BIGINT NOT NULL DEFAULT 0,
        output_tokens BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE agents (
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        spec JSONB NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (tenant_id, name)
    );
    """,
    # Tenant and agent token budgets sum a tenant's recent steps.
    "CREATE INDEX steps_tenant_finished ON steps (tenant_id, finished_at)",
    # Cost accounting from the price table (HOMEO_PRICES).
    """
    ALTER TABLE steps ADD COLUMN cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
    """,
    # Tokens a tenant used outside runs (/v1/chat/completions, /v1/embeddings),
    # counted by tenant budgets; and API keys, stored as argon2 hashes.
    """
    CREATE TABLE usage_events (
        tenant_id TEXT NOT NULL,
        source TEXT NOT NULL,
        model TEXT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX usage_events_tenant_at ON usage_events (tenant_id, at);
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);
    """,
]


def _json(value: Any) -> Jsonb | None:
    """A JSON parameter; Python None stays SQL NULL, as in the SQLite store."""
    return None if value is None else Jsonb(value)


def _run(row: dict[str, Any] | None) -> Run | None:
    return None if row is None else Run.model_validate(row)


def _clock(now: float | None) -> float:
    return time.time() if now is None else float(now)


_INSERT_USAGE = (
    "INSERT INTO usage_events (tenant_id, source, model, input_tokens, output_tokens, cost_usd,"
    " at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def _usage_row(event: UsageEvent) -> tuple[Any, ...]:
    return (event.tenant_id, event.source, event.model, event.input_tokens,
            event.output_tokens, event.cost_usd, event.at)


class PostgresStore(Store):
    def __init__(self, database: PostgresDatabase) -> None:
        self.db = database
        self.db.migrate("store", MIGRATIONS)

    # --- runs -------------------------------------------------------------
    def create_run(self, new: NewRun, *, now: float | None = None) -> tuple[Run, bool]:
        now = _clock(now)
        # Racing creators with one key: the loser's insert waits for the winner's
        # commit and does nothing; its SELECT, a new snapshot, then sees the winner.
        # Only a run deleted in between sends us round again.
        for _ in range(3):
            with self.db.transaction() as db:
                row = db.execute(
                    "INSERT INTO runs (id, tenant_id, agent, input, status, idempotency_key,"
                    " request_id, created_at, updated_at)"
                    " VALUES (%s, %s, %s, %s, 'queued', %s, %s, %s, %s)"
                    " ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
                    " DO NOTHING RETURNING *",
                    (
                        new_id("run", now),
                        new.tenant_id,
                        new.agent,
                        new.input,
                        new.idempotency_key,
                        new.request_id,
                        now,
                        now,
                    ),
                ).fetchone()
                if row is not None:
                    return Run.model_validate(row), True
                existing = db.execute(
                    "SELECT * FROM runs WHERE tenant_id = %s AND idempotency_key = %s",
                    (new.tenant_id, new.idempotency_key),
                ).fetchone()
            if existing is not None:
                return Run.model_validate(existing), False
        raise StoreError(
            f"run with idempotency key {new.idempotency_key!r} kept vanishing; try again"
        )

    def get_run(self, tenant_id: str, run_id: str) -> Run | None:
        with self.db.connection() as db:
            row = db.execute(
                "SELECT * FROM runs WHERE tenant_id = %s AND id = %s", (tenant_id, run_id)
            ).fetchone()
        return _run(row)

    def run_status(self, tenant_id: str, run_id: str) -> str | None:
        with self.db.connection() as db:
            row = db.execute(
                "SELECT status FROM runs WHERE tenant_id = %s AND id = %s", (tenant_id, run_id)
            ).fetchone()
        return None if row is None else row["status"]

    def list_runs(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        agent: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Run]:
        clauses, params = ["tenant_id = %s"], [tenant_id]
        for column, value in (("status", status), ("agent", agent)):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if before is not None:
            clauses.append("id < %s")
            params.append(before)
        sql = f"SELECT * FROM runs WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT %s"
        with self.db.connection() as db:
            rows = db.execute(sql, (*params, limit)).fetchall()  # type: ignore[call-overload]
        return [Run.model_validate(row) for row in rows]

    def transition_run(
        self,
        tenant_id: str,
        run_id: str,
        status: str,
        *,
        allowed_from: frozenset[str] | set[str],
        output: str | None = None,
        error: str | None = None,
        now: float | None = None,
    ) -> Run | None:
        now = _clock(now)
        started = now if status == "running" else None
        finished = now if status in FINAL_STATUSES else None
        with self.db.connection() as db:
            row = db.execute(
                "UPDATE runs SET status = %s, updated_at = %s,"
                " output = COALESCE(%s, output), error = %s,"
                " started_at = COALESCE(started_at, %s),"
                " finished_at = COALESCE(%s, finished_at)"
                " WHERE tenant_id = %s AND id = %s AND status = ANY(%s) RETURNING *",
                (
                    status,
                    now,
                    output,
                    error,
                    started,
                    finished,
                    tenant_id,
                    run_id,
                    sorted(allowed_from),
                ),
            ).fetchone()
        return _run(row)

    def count_runs(self, tenant_id: str | None = None) -> dict[str, int]:
        sql = "SELECT status, COUNT(*) AS n FROM runs"
        params: tuple[str, ...] = ()
        if tenant_id is not None:
            sql, params = sql + " WHERE tenant_id = %s", (tenant_id,)
        with self.db.connection() as db:
            rows = db.execute(sql + " GROUP BY status", params).fetchall()  # type: ignore[arg-type]
        return {row["status"]: row["n"] for row in rows}

    # --- steps ------------------------------------------------------------
    def begin_step(
        self,
        tenant_id: str,
        run_id: str,
        seq: int,
        kind: str,
        name: str,
        input: Any,
        *,
        now: float | None = None,
    ) -> Step:
        now = _clock(now)
        with self.db.transaction() as db:
            run = db.execute(
                "SELECT 1 FROM runs WHERE tenant_id = %s AND id = %s", (tenant_id, run_id)
            ).fetchone()
            if run is None:
                raise StoreError(f"run {run_id} not found")
            # A step begun before and never finished is reused with attempts + 1;
            # one that succeeded is left alone and no row comes back.
            row = db.execute(
                "INSERT INTO steps (run_id, tenant_id, seq, kind, name, status, input,"
                " started_at) VALUES (%s, %s, %s, %s, %s, 'running', %s, %s)"
                " ON CONFLICT (run_id, seq) DO UPDATE SET status = 'running',"
                " attempts = steps.attempts + 1, error = NULL, input = excluded.input,"
                " started_at = excluded.started_at, finished_at = NULL"
                " WHERE steps.status <> 'succeeded' RETURNING *",
                (run_id, tenant_id, seq, kind, name, _json(input), now),
            ).fetchone()
        if row is None:
            raise StoreError(f"step {seq} of run {run_id} already succeeded")
        return Step.model_validate(row)

    def complete_step(
        self,
        tenant_id: str,
        run_id: str,
        seq: int,
        output: Any,
        checkpoint: dict[str, Any],
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float = 0.0,
        now: float | None = None,
    ) -> Step:
        now = _clock(now)
        with self.db.transaction() as db:
            row = db.execute(
                "UPDATE steps SET status = 'succeeded', output = %s, finished_at = %s,"
                " input_tokens = %s, output_tokens = %s, cost_usd = %s"
                " WHERE tenant_id = %s AND run_id = %s AND seq = %s AND status = 'running'"
                " RETURNING *",
                (_json(output), now, input_tokens, output_tokens, cost_usd, tenant_id, run_id,
                 seq),
            ).fetchone()
            if row is None:
                raise StoreError(f"step {seq} of run {run_id} is not running")
            db.execute(
                "UPDATE runs SET checkpoint = %s, updated_at = %s,"
                " input_tokens = input_tokens + %s, output_tokens = output_tokens + %s,"
                " cost_usd = cost_usd + %s"
                " WHERE tenant_id = %s AND id = %s",
                (_json(checkpoint), now, input_tokens, output_tokens, cost_usd, tenant_id,
                 run_id),
            )
        return Step.model_validate(row)

    def fail_step(
        self, tenant_id: str, run_id: str, seq: int, error: str, *, now: float | None = None
    ) -> Step:
        now = _clock(now)
        with self.db.connection() as db:
            row = db.execute(
                "UPDATE steps SET status = 'failed', error = %s, finished_at = %s"
                " WHERE tenant_id = %s AND run_id = %s AND seq = %s AND status = 'running'"
                " RETURNING *",
                (error, now, tenant_id, run_id, seq),
            ).fetchone()
        if row is None:
            raise StoreError(f"step {seq} of run {run_id} is not running")
        return Step.model_validate(row)

    def list_steps(self, tenant_id: str, run_id: str, *, after_seq: int = -1) -> list[Step]:
        with self.db.connection() as db:
            rows = db.execute(
                "SELECT * FROM steps WHERE tenant_id = %s AND run_id = %s AND seq > %s"
                " ORDER BY seq",
                (tenant_id, run_id, after_seq),
            ).fetchall()
        return [Step.model_validate(row) for row in rows]

    def usage(
        self, tenant_id: str, *, since: float = 0.0, agent: str | None = None
    ) -> UsageTotals:
        used = (
            "SELECT steps.input_tokens, steps.output_tokens, steps.cost_usd FROM steps"
            + (" JOIN runs ON runs.id = steps.run_id AND runs.agent = %s" if agent else "")
            + " WHERE steps.tenant_id = %s AND steps.status = 'succeeded'"
            " AND steps.finished_at >= %s"
        )
        params: tuple[Any, ...] = (agent, tenant_id, since) if agent else (tenant_id, since)
        if agent is None:  # direct model calls count for the tenant, not for an agent
            used += (
                " UNION ALL SELECT input_tokens, output_tokens, cost_usd FROM usage_events"
                " WHERE tenant_id = %s AND at >= %s"
            )
            params += (tenant_id, since)
        sql = (
            "SELECT COALESCE(SUM(input_tokens), 0) AS input_tokens,"
            " COALESCE(SUM(output_tokens), 0) AS output_tokens,"
            f" COALESCE(SUM(cost_usd), 0) AS cost_usd FROM ({used}) AS used"
        )
        with self.db.connection() as db:
            row = db.execute(sql, params).fetchone()  # type: ignore[arg-type]
        assert row is not None  # an aggregate always returns one row
        # SUM of BIGINT is NUMERIC in PostgreSQL: back to int.
        return UsageTotals(
            input_tokens=int(row["input_tokens"]),
            output_tokens=int(row["output_tokens"]),
            cost_usd=float(row["cost_usd"]),
        )

    def record_usage(self, events: Sequence[UsageEvent]) -> None:
        with self.db.transaction() as db, db.cursor() as cursor:
            cursor.executemany(_INSERT_USAGE, [_usage_row(event) for event in events])

    def put_agent(
        self, tenant_id: str, name: str, spec: dict[str, Any], *, now: float | None = None
    ) -> AgentRecord:
        now = _clock(now)
        with self.db.connection() as db:
            db.execute(
                "INSERT INTO agents (tenant_id, name, spec, updated_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (tenant_id, name) DO UPDATE SET spec = excluded.spec,"
                " updated_at = excluded.updated_at",
                (tenant_id, name, Jsonb(spec), now),
            )
        return AgentRecord(tenant_id=tenant_id, name=name, spec=spec, updated_at=now)

    def get_agent(self, tenant_id: str, name: str) -> AgentRecord | None:
        with self.db.connection() as db:
            row = db.execute(
                "SELECT * FROM agents WHERE tenant_id = %s AND name = %s", (tenant_id, name)
            ).fetchone()
        return None if row is None else AgentRecord.model_validate(row)

    def list_agents(self, tenant_id: str) -> list[AgentRecord]:
        with self.db.connection() as db:
            rows = db.execute(
                'SELECT * FROM agents WHERE tenant_id = %s ORDER BY name COLLATE "C"',
                (tenant_id,),
            ).fetchall()
        return [AgentRecord.model_validate(row) for row in rows]

    # --- API keys ---------------------------------------------------------
    def put_key(self, key: ApiKey) -> None:
        try:
            with self.db.connection() as db:
                db.execute(
                    "INSERT INTO api_keys (id, tenant_id, name, role, secret_hash, created_at,"
                    " revoked_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (key.id, key.tenant_id, key.name, key.role, key.secret_hash,
                     key.created_at, key.revoked_at),
                )
        except psycopg.errors.UniqueViolation:
            raise StoreError(f"an API key with id {key.id!r} exists") from None

    def get_key(self, key_id: str) -> ApiKey | None:
        with self.db.connection() as db:
            row = db.execute("SELECT * FROM api_keys WHERE id = %s", (key_id,)).fetchone()
        return None if row is None else ApiKey.model_validate(row)

    def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        with self.db.connection() as db:
            if tenant_id is None:
                rows = db.execute("SELECT * FROM api_keys ORDER BY created_at, id").fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM api_keys WHERE tenant_id = %s ORDER BY created_at, id",
                    (tenant_id,),
                ).fetchall()
        return [ApiKey.model_validate(row) for row in rows]

    def revoke_key(self, key_id: str, *, now: float | None = None) -> ApiKey | None:
        now = _clock(now)
        with self.db.connection() as db:
            db.execute(
                "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (now, key_id),
            )
        return self.get_key(key_id)

    def ping(self) -> None:
        with self.db.connection() as db:
            db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self.db.close()
