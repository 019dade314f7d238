"""The PostgreSQL store: the same semantics as the SQLite one, for several hosts.

Writes check their preconditions inside the statement (`ON CONFLICT`,
`WHERE status = ...`), so concurrent callers need no table locks. Work of one
statement runs on an autocommit connection; work of several in a transaction.
"""

from __future__ import annotations

from typing import Any

from homeo.db.dialect import clock
from homeo.db.postgres import PostgresDatabase
from homeo.ids import new_id
from homeo.store.base import StoreError
from homeo.store.models import FINAL_STATUSES, NewRun, Run, Step
from homeo.store.sql import SQLStore

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
    # Lease fencing and progress: every claim raises lease_epoch; steps_done,
    # claimed_steps and stalls tell a run that progresses from one that does not.
    # The sweeper looks for unsettled runs whose job is missing.
    """
    ALTER TABLE runs ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN steps_done BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN claimed_steps BIGINT;
    ALTER TABLE runs ADD COLUMN stalls BIGINT NOT NULL DEFAULT 0;
    UPDATE runs SET steps_done = (SELECT COUNT(*) FROM steps
        WHERE steps.run_id = runs.id AND steps.status = 'succeeded');
    CREATE INDEX runs_unsettled ON runs (id) WHERE status IN ('queued', 'running');
    """,
    # Waiting runs (approval, a person's input, child runs) and sub-agents:
    # what a run waits for, since when, how long it has waited in all, how often
    # it was woken (each wake is a new job), and the run that started it.
    """
    ALTER TABLE runs ADD COLUMN waiting_for JSONB;
    ALTER TABLE runs ADD COLUMN waiting_since DOUBLE PRECISION;
    ALTER TABLE runs ADD COLUMN waited_seconds DOUBLE PRECISION NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN wakes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN parent_run_id TEXT;
    CREATE INDEX runs_parent ON runs (tenant_id, parent_run_id) WHERE parent_run_id IS NOT NULL;
    CREATE INDEX runs_waiting ON runs (id) WHERE status = 'waiting';
    """,
    # Run history: every completed step keeps the checkpoint it produced, as a
    # delta from the step before (store/deltas.py), in a table of its own so
    # that pruning deletes rows and frees pages; forks record where they came
    # from; retention marks the runs whose per-step checkpoints it pruned.
    """
    CREATE TABLE step_checkpoints (
        run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        delta TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    ALTER TABLE runs ADD COLUMN forked_from_run TEXT COLLATE "C";
    ALTER TABLE runs ADD COLUMN forked_from_step BIGINT;
    ALTER TABLE runs ADD COLUMN checkpoints_pruned_at DOUBLE PRECISION;
    CREATE INDEX runs_prunable ON runs (finished_at, id)
        WHERE checkpoints_pruned_at IS NULL AND finished_at IS NOT NULL;
    """,
    # Worker heartbeats (every worker process writes its row), and what the
    # autonomic loop keeps: its signals (pruned past a retention) and its
    # diagnoses while they hold (kept for a while after they clear).
    """
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        slots BIGINT NOT NULL,
        in_use BIGINT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE autonomic_signals (
        observer TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        name TEXT NOT NULL,
        subject TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX autonomic_signals_at ON autonomic_signals (at);
    CREATE TABLE autonomic_diagnoses (
        id TEXT COLLATE "C" PRIMARY KEY,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        confidence DOUBLE PRECISION NOT NULL,
        summary TEXT NOT NULL,
        evidence JSONB NOT NULL,
        first_seen DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL,
        cleared_at DOUBLE PRECISION
    );
    CREATE INDEX autonomic_diagnoses_open ON autonomic_diagnoses (kind, subject)
        WHERE cleared_at IS NULL;
    CREATE INDEX autonomic_diagnoses_seen ON autonomic_diagnoses (last_seen);
    """,
    # Agent versions (every definition an agent has had, by content hash, with
    # its parent and author), the version each run executes, and the scored
    # cases of evaluation suites per version.
    """
    CREATE TABLE agent_versions (
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        parent TEXT,
        author TEXT NOT NULL,
        spec JSONB NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (tenant_id, name, version)
    );
    ALTER TABLE agents ADD COLUMN version TEXT;
    ALTER TABLE runs ADD COLUMN agent_version TEXT;
    CREATE INDEX runs_agent_version ON runs (tenant_id, agent, agent_version, id);
    CREATE TABLE eval_results (
        tenant_id TEXT NOT NULL,
        eval_id TEXT COLLATE "C" NOT NULL,
        suite TEXT NOT NULL,
        agent TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        case_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        status TEXT NOT NULL,
        score DOUBLE PRECISION NOT NULL,
        passed BOOLEAN NOT NULL,
        checks JSONB NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (tenant_id, eval_id, case_id)
    );
    CREATE INDEX eval_results_version ON eval_results (tenant_id, agent, agent_version);
    """,
    # Rate limits shared by every process on the database (per key, user and
    # tenant), and who submitted each run (a member may cancel only its own).
    """
    CREATE TABLE rate_buckets (
        bucket TEXT PRIMARY KEY,
        tokens DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE run_submitters (
        tenant_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        principal TEXT NOT NULL,
        PRIMARY KEY (tenant_id, run_id)
    );
    """,
    # The audit log: per tenant, each entry chained to the one before by its
    # hash and signed; the head (last seq and hash, signed apart) shows a log
    # cut short. Appenders of one tenant take turns on its head row.
    """
    CREATE TABLE audit_log (
        tenant_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        subject TEXT NOT NULL,
        details JSONB NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        key_id TEXT NOT NULL,
        signature TEXT NOT NULL,
        PRIMARY KEY (tenant_id, seq)
    );
    CREATE TABLE audit_heads (
        tenant_id TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL,
        key_id TEXT NOT NULL,
        signature TEXT NOT NULL
    );
    """,
    # A child run's share of its parent's token budget (engine/subagents.py).
    """
    ALTER TABLE runs ADD COLUMN token_budget INTEGER;
    """,
    # The autonomic loop's shared control state (every process applies it) and
    # its decisions with their outcomes (Plan learns from them).
    """
    CREATE TABLE control (
        key TEXT PRIMARY KEY,
        value JSONB NOT NULL,
        set_by TEXT NOT NULL,
        set_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION
    );
    CREATE TABLE autonomic_decisions (
        id TEXT COLLATE "C" PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        observer TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        action TEXT NOT NULL,
        params JSONB NOT NULL,
        status TEXT NOT NULL,
        explanation JSONB NOT NULL,
        settle_at DOUBLE PRECISION NOT NULL,
        outcome TEXT,
        settled_at DOUBLE PRECISION,
        approved_by TEXT,
        error TEXT,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX autonomic_decisions_at ON autonomic_decisions (at);
    CREATE INDEX autonomic_decisions_kind ON autonomic_decisions (kind, action);
    """,
    # Encryption at rest (homeo/crypto): which tenants keep their runs sealed,
    # and their data keys, each wrapped by a key-encryption key of the key file.
    """
    CREATE TABLE tenant_encryption (
        tenant_id TEXT PRIMARY KEY,
        sensitive BOOLEAN NOT NULL,
        data_key_id TEXT,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE data_keys (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        kek_id TEXT NOT NULL,
        wrapped TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX data_keys_kek ON data_keys (kek_id, id);
    """,
    # The person a run works for: whose memory an agent with `memory: {scope: user}` reaches.
    """
    ALTER TABLE runs ADD COLUMN user_id TEXT;
    """,
    # An evolutionary search's state after each generation (homeo/evolve/search.py),
    # so a search resumes where it stopped.
    """
    CREATE TABLE evolve_generations (
        tenant_id TEXT NOT NULL,
        search_id TEXT NOT NULL,
        generation INTEGER NOT NULL,
        state JSONB NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (tenant_id, search_id, generation)
    );
    """,
    # The model registry (homeo/evolve/registry.py) and curated training data sets.
    """
    CREATE TABLE datasets (
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        train JSONB NOT NULL,
        validation JSONB NOT NULL,
        provenance JSONB NOT NULL,
        sha256 TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (tenant_id, name, version)
    );
    CREATE TABLE models (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        deployment TEXT,
        parent TEXT,
        dataset TEXT,
        stage TEXT NOT NULL,
        metrics JSONB NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE model_alias_changes (
        alias TEXT NOT NULL,
        seq INTEGER NOT NULL,
        model_id TEXT NOT NULL,
        deployment TEXT NOT NULL,
        previous_model_id TEXT,
        action TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (alias, seq)
    );
    """,
    # The dashboard's sessions (homeo.api.ui.session): the cookie holds a random
    # secret whose SHA-256 is the id; signing out revokes the row.
    """
    CREATE TABLE ui_sessions (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        key_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
    """,
    # What each worker process's sandboxed tools hit since it started
    # (homeo.sandbox.tally): the autonomic Monitor sums them across processes.
    """
    ALTER TABLE workers ADD COLUMN sandbox_runs BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE workers ADD COLUMN sandbox_timeouts BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE workers ADD COLUMN sandbox_ooms BIGINT NOT NULL DEFAULT 0;
    """,
    # Each worker process's resident memory now and at its first heartbeat:
    # the autonomic loop recycles one that grew too much.
    """
    ALTER TABLE workers ADD COLUMN rss_bytes BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE workers ADD COLUMN rss_start_bytes BIGINT NOT NULL DEFAULT 0;
    """,
]



class PostgresStore(SQLStore):
    db: PostgresDatabase

    def __init__(self, database: PostgresDatabase) -> None:
        super().__init__(database, MIGRATIONS)

    # --- runs -------------------------------------------------------------
    def create_run(self, new: NewRun, *, now: float | None = None) -> tuple[Run, bool]:
        if self.disk_floor is not None:
            self.disk_floor.check()  # DiskFull: no new work on a nearly full disk
        now = clock(now)
        sealer = self.sealer_for(new.tenant_id)
        # Racing creators with one key: the loser's insert waits for the winner's
        # commit and does nothing; its SELECT, a new snapshot, then sees the winner.
        # Only a run deleted in between sends us round again.
        for _ in range(3):
            with self.db.transaction() as db:
                row = db.execute(
                    "INSERT INTO runs (id, tenant_id, agent, input, status, idempotency_key,"
                    " request_id, parent_run_id, created_at, updated_at, checkpoint,"
                    " forked_from_run, forked_from_step, agent_version, token_budget, user_id)"
                    " VALUES (%s, %s, %s, %s, 'queued', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
                    " DO NOTHING RETURNING *",
                    (
                        new_id("run", now),
                        new.tenant_id,
                        new.agent,
                        self.text_value(sealer, new.input, "runs.input"),
                        new.idempotency_key,
                        new.request_id,
                        new.parent_run_id,
                        now,
                        now,
                        self.json_value(sealer, new.checkpoint, "runs.checkpoint"),
                        new.forked_from_run,
                        new.forked_from_step,
                        new.agent_version,
                        new.token_budget,
                        new.user_id,
                    ),
                ).fetchone()
                if row is not None:
                    return self.run_of(row), True
                existing = db.execute(
                    "SELECT * FROM runs WHERE tenant_id = %s AND idempotency_key = %s",
                    (new.tenant_id, new.idempotency_key),
                ).fetchone()
            if existing is not None:
                return self.run_of(existing), False
        raise StoreError(
            f"run with idempotency key {new.idempotency_key!r} kept vanishing; try again"
        )

    def transition_run(
        self,
        tenant_id: str,
        run_id: str,
        status: str,
        *,
        allowed_from: frozenset[str] | set[str],
        output: str | None = None,
        error: str | None = None,
        fence: int | None = None,
        now: float | None = None,
    ) -> Run | None:
        now = clock(now)
        fenced, fence_params = (" AND lease_epoch = %s", (fence,)) if fence is not None else ("", ())
        started = now if status == "running" else None
        finished = now if status in FINAL_STATUSES else None
        output = self.text_value(self.sealer_for(tenant_id) if output is not None else None,
                                 output, "runs.output")
        with self.db.connection() as db:
            row = db.execute(
                "UPDATE runs SET status = %s, updated_at = %s,"
                " output = COALESCE(%s, output), error = %s,"
                " started_at = COALESCE(started_at, %s),"
                " finished_at = COALESCE(%s, finished_at)"
                " WHERE tenant_id = %s AND id = %s AND status = ANY(%s)" + fenced + " RETURNING *",
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
                    *fence_params,
                ),
            ).fetchone()
        return self.run_of(row)

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
        fence: int | None = None,
        now: float | None = None,
    ) -> Step:
        now = clock(now)
        sealer = self.sealer_for(tenant_id)
        with self.db.transaction() as db:
            self.lock_run(db, tenant_id, run_id, fence)
            # A step begun before and never finished is reused with attempts + 1;
            # one that succeeded is left alone and no row comes back.
            row = db.execute(
                "INSERT INTO steps (run_id, tenant_id, seq, kind, name, status, input,"
                " started_at) VALUES (%s, %s, %s, %s, %s, 'running', %s, %s)"
                " ON CONFLICT (run_id, seq) DO UPDATE SET status = 'running',"
                " attempts = steps.attempts + 1, error = NULL, input = excluded.input,"
                " started_at = excluded.started_at, finished_at = NULL"
                " WHERE steps.status <> 'succeeded' RETURNING *",
                (run_id, tenant_id, seq, kind, name,
                 self.json_value(sealer, input, "steps.input"), now),
            ).fetchone()
        if row is None:
            raise StoreError(f"step {seq} of run {run_id} already succeeded")
        return self.step_of(row)

    def close(self) -> None:
        self.db.close()
