"""The SQLite store: the embedded default."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from homeo.db.sqlite import SQLiteDatabase
from homeo.ids import new_id
from homeo.store.base import Store, StoreError
from homeo.store.models import (
    AgentRecord,
    ApiKey,
    NewRun,
    Run,
    Step,
    UsageEvent,
    UsageTotals,
)

MIGRATIONS = [
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        input TEXT NOT NULL,
        status TEXT NOT NULL,
        output TEXT,
        error TEXT,
        idempotency_key TEXT,
        request_id TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        checkpoint TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX runs_idempotency ON runs (tenant_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX runs_tenant_id ON runs (tenant_id, id);
    CREATE INDEX runs_tenant_status ON runs (tenant_id, status, id);
    CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        tenant_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        input TEXT,
        output TEXT,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 1,
        started_at REAL NOT NULL,
        finished_at REAL,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE agents (
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (tenant_id, name)
    )
    """,
    # Tenant and agent token budgets sum a tenant's recent steps.
    "CREATE INDEX steps_tenant_finished ON steps (tenant_id, finished_at)",
    # Cost accounting from the price table (HOMEO_PRICES).
    """
    ALTER TABLE steps ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
    """,
    # Tokens a tenant used outside runs (/v1/chat/completions, /v1/embeddings),
    # counted by tenant budgets; and API keys, stored as argon2 hashes.
    """
    CREATE TABLE usage_events (
        tenant_id TEXT NOT NULL,
        source TEXT NOT NULL,
        model TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX usage_events_tenant_at ON usage_events (tenant_id, at);
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);
    """,
]

_RUN_JSON = ("checkpoint",)
_STEP_JSON = ("input", "output")


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _row(row: sqlite3.Row, json_columns: tuple[str, ...]) -> dict[str, Any]:
    record = dict(row)
    for column in json_columns:
        if record.get(column) is not None:
            record[column] = json.loads(record[column])
    return record


def _run(row: sqlite3.Row | None) -> Run | None:
    return None if row is None else Run.model_validate(_row(row, _RUN_JSON))


def _step(row: sqlite3.Row) -> Step:
    return Step.model_validate(_row(row, _STEP_JSON))


_INSERT_USAGE = (
    "INSERT INTO usage_events (tenant_id, source, model, input_tokens, output_tokens, cost_usd,"
    " at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _usage_row(event: UsageEvent) -> tuple[Any, ...]:
    return (event.tenant_id, event.source, event.model, event.input_tokens,
            event.output_tokens, event.cost_usd, event.at)


class SQLiteStore(Store):
    inline_reads = True  # WAL readers never wait for the writer

    def __init__(self, database: SQLiteDatabase) -> None:
        self.db = database
        self.db.migrate("store", MIGRATIONS)

    # --- runs -------------------------------------------------------------
    def create_run(self, new: NewRun, *, now: float | None = None) -> tuple[Run, bool]:
        now = time.time() if now is None else now
        with self.db.write() as db:
            if new.idempotency_key is not None:
                existing = db.execute(
                    "SELECT * FROM runs WHERE tenant_id = ? AND idempotency_key = ?",
                    (new.tenant_id, new.idempotency_key),
                ).fetchone()
                if existing is not None:
                    return _run(existing), False  # type: ignore[return-value]
            row = db.execute(
                "INSERT INTO runs (id, tenant_id, agent, input, status, idempotency_key,"
                " request_id, created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)"
                " RETURNING *",
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
        return _run(row), True  # type: ignore[return-value]

    def get_run(self, tenant_id: str, run_id: str) -> Run | None:
        with self.db.read() as db:
            row = db.execute(
                "SELECT * FROM runs WHERE tenant_id = ? AND id = ?", (tenant_id, run_id)
            ).fetchone()
        return _run(row)

    def run_status(self, tenant_id: str, run_id: str) -> str | None:
        with self.db.read() as db:
            row = db.execute(
                "SELECT status FROM runs WHERE tenant_id = ? AND id = ?", (tenant_id, run_id)
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
        clauses, params = ["tenant_id = ?"], [tenant_id]
        for column, value in (("status", status), ("agent", agent)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            clauses.append("id < ?")
            params.append(before)
        sql = f"SELECT * FROM runs WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?"
        with self.db.read() as db:
            rows = db.execute(sql, (*params, limit)).fetchall()
        return [_run(row) for row in rows]  # type: ignore[misc]

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
        now = time.time() if now is None else now
        sources = sorted(allowed_from)
        marks = ",".join("?" for _ in sources)
        with self.db.write() as db:
            row = db.execute(
                f"UPDATE runs SET status = ?, updated_at = ?,"
                " output = COALESCE(?, output), error = ?,"
                " started_at = CASE WHEN ? = 'running' THEN COALESCE(started_at, ?)"
                "   ELSE started_at END,"
                " finished_at = CASE WHEN ? IN ('succeeded','failed','cancelled') THEN ?"
                "   ELSE finished_at END"
                f" WHERE tenant_id = ? AND id = ? AND status IN ({marks}) RETURNING *",
                (status, now, output, error, status, now, status, now, tenant_id, run_id, *sources),
            ).fetchone()
        return _run(row)

    def count_runs(self, tenant_id: str | None = None) -> dict[str, int]:
        sql = "SELECT status, COUNT(*) AS n FROM runs"
        params: tuple[str, ...] = ()
        if tenant_id is not None:
            sql, params = sql + " WHERE tenant_id = ?", (tenant_id,)
        with self.db.read() as db:
            rows = db.execute(sql + " GROUP BY status", params).fetchall()
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
        now = time.time() if now is None else now
        with self.db.write() as db:
            if db.execute(
                "SELECT 1 FROM runs WHERE tenant_id = ? AND id = ?", (tenant_id, run_id)
            ).fetchone() is None:
                raise StoreError(f"run {run_id} not found")
            existing = db.execute(
                "SELECT * FROM steps WHERE run_id = ? AND seq = ?", (run_id, seq)
            ).fetchone()
            if existing is None:
                row = db.execute(
                    "INSERT INTO steps (run_id, tenant_id, seq, kind, name, status, input,"
                    " started_at) VALUES (?, ?, ?, ?, ?, 'running', ?, ?) RETURNING *",
                    (run_id, tenant_id, seq, kind, name, _dumps(input), now),
                ).fetchone()
            elif existing["status"] == "succeeded":
                raise StoreError(f"step {seq} of run {run_id} already succeeded")
            else:
                row = db.execute(
                    "UPDATE steps SET status = 'running', attempts = attempts + 1, error = NULL,"
                    " input = ?, started_at = ?, finished_at = NULL"
                    " WHERE run_id = ? AND seq = ? RETURNING *",
                    (_dumps(input), now, run_id, seq),
                ).fetchone()
        return _step(row)

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
        now = time.time() if now is None else now
        with self.db.write() as db:
            row = db.execute(
                "UPDATE steps SET status = 'succeeded', output = ?, finished_at = ?,"
                " input_tokens = ?, output_tokens = ?, cost_usd = ?"
                " WHERE tenant_id = ? AND run_id = ? AND seq = ? AND status = 'running'"
                " RETURNING *",
                (_dumps(output), now, input_tokens, output_tokens, cost_usd, tenant_id, run_id,
                 seq),
            ).fetchone()
            if row is None:
                raise StoreError(f"step {seq} of run {run_id} is not running")
            db.execute(
                "UPDATE runs SET checkpoint = ?, updated_at = ?,"
                " input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,"
                " cost_usd = cost_usd + ?"
                " WHERE tenant_id = ? AND id = ?",
                (_dumps(checkpoint), now, input_tokens, output_tokens, cost_usd, tenant_id,
                 run_id),
            )
        return _step(row)

    def fail_step(
        self, tenant_id: str, run_id: str, seq: int, error: str, *, now: float | None = None
    ) -> Step:
        now = time.time() if now is None else now
        with self.db.write() as db:
            row = db.execute(
                "UPDATE steps SET status = 'failed', error = ?, finished_at = ?"
                " WHERE tenant_id = ? AND run_id = ? AND seq = ? AND status = 'running'"
                " RETURNING *",
                (error, now, tenant_id, run_id, seq),
            ).fetchone()
        if row is None:
            raise StoreError(f"step {seq} of run {run_id} is not running")
        return _step(row)

    def list_steps(self, tenant_id: str, run_id: str, *, after_seq: int = -1) -> list[Step]:
        with self.db.read() as db:
            rows = db.execute(
                "SELECT * FROM steps WHERE tenant_id = ? AND run_id = ? AND seq > ? ORDER BY seq",
                (tenant_id, run_id, after_seq),
            ).fetchall()
        return [_step(row) for row in rows]

    def usage(
        self, tenant_id: str, *, since: float = 0.0, agent: str | None = None
    ) -> UsageTotals:
        used = (
            "SELECT steps.input_tokens, steps.output_tokens, steps.cost_usd FROM steps"
            + (" JOIN runs ON runs.id = steps.run_id AND runs.agent = ?" if agent else "")
            + " WHERE steps.tenant_id = ? AND steps.status = 'succeeded'"
            " AND steps.finished_at >= ?"
        )
        params: tuple[Any, ...] = (agent, tenant_id, since) if agent else (tenant_id, since)
        if agent is None:  # direct model calls count for the tenant, not for an agent
            used += (
                " UNION ALL SELECT input_tokens, output_tokens, cost_usd FROM usage_events"
                " WHERE tenant_id = ? AND at >= ?"
            )
            params += (tenant_id, since)
        sql = (
            "SELECT COALESCE(SUM(input_tokens), 0) AS input_tokens,"
            " COALESCE(SUM(output_tokens), 0) AS output_tokens,"
            f" COALESCE(SUM(cost_usd), 0) AS cost_usd FROM ({used}) AS used"
        )
        with self.db.read() as db:
            row = db.execute(sql, params).fetchone()
        return UsageTotals.model_validate(dict(row))

    def record_usage(self, events: Sequence[UsageEvent]) -> None:
        with self.db.write() as db:
            db.executemany(_INSERT_USAGE, [_usage_row(event) for event in events])

    # --- agents -----------------------------------------------------------
    def put_agent(
        self, tenant_id: str, name: str, spec: dict[str, Any], *, now: float | None = None
    ) -> AgentRecord:
        now = time.time() if now is None else now
        with self.db.write() as db:
            db.execute(
                "INSERT INTO agents (tenant_id, name, spec, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant_id, name) DO UPDATE SET spec = excluded.spec,"
                " updated_at = excluded.updated_at",
                (tenant_id, name, _dumps(spec), now),
            )
        return AgentRecord(tenant_id=tenant_id, name=name, spec=spec, updated_at=now)

    def get_agent(self, tenant_id: str, name: str) -> AgentRecord | None:
        with self.db.read() as db:
            row = db.execute(
                "SELECT * FROM agents WHERE tenant_id = ? AND name = ?", (tenant_id, name)
            ).fetchone()
        return None if row is None else AgentRecord.model_validate(_row(row, ("spec",)))

    def list_agents(self, tenant_id: str) -> list[AgentRecord]:
        with self.db.read() as db:
            rows = db.execute(
                "SELECT * FROM agents WHERE tenant_id = ? ORDER BY name", (tenant_id,)
            ).fetchall()
        return [AgentRecord.model_validate(_row(row, ("spec",))) for row in rows]

    # --- API keys ---------------------------------------------------------
    def put_key(self, key: ApiKey) -> None:
        try:
            with self.db.write() as db:
                db.execute(
                    "INSERT INTO api_keys (id, tenant_id, name, role, secret_hash, created_at,"
                    " revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key.id, key.tenant_id, key.name, key.role, key.secret_hash,
                     key.created_at, key.revoked_at),
                )
        except sqlite3.IntegrityError:
            raise StoreError(f"an API key with id {key.id!r} exists") from None

    def get_key(self, key_id: str) -> ApiKey | None:
        with self.db.read() as db:
            row = db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else ApiKey.model_validate(dict(row))

    def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        with self.db.read() as db:
            if tenant_id is None:
                rows = db.execute("SELECT * FROM api_keys ORDER BY created_at, id").fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id",
                    (tenant_id,),
                ).fetchall()
        return [ApiKey.model_validate(dict(row)) for row in rows]

    def revoke_key(self, key_id: str, *, now: float | None = None) -> ApiKey | None:
        now = time.time() if now is None else now
        with self.db.write() as db:
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, key_id),
            )
        return self.get_key(key_id)

    def ping(self) -> None:
        with self.db.read() as db:
            db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self.db.close()
