"""The SQLite store: the embedded default."""

from __future__ import annotations

from typing import Any

from homeo.db.dialect import clock
from homeo.db.sqlite import SQLiteDatabase
from homeo.ids import new_id
from homeo.store.base import StoreError
from homeo.store.models import NewRun, PruneResult, Run, Step
from homeo.store.sql import SQLStore

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
    # Lease fencing and progress: every claim raises lease_epoch; steps_done,
    # claimed_steps and stalls tell a run that progresses from one that does not.
    # The sweeper looks for unsettled runs whose job is missing.
    """
    ALTER TABLE runs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN steps_done INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN claimed_steps INTEGER;
    ALTER TABLE runs ADD COLUMN stalls INTEGER NOT NULL DEFAULT 0;
    UPDATE runs SET steps_done = (SELECT COUNT(*) FROM steps
        WHERE steps.run_id = runs.id AND steps.status = 'succeeded');
    CREATE INDEX runs_unsettled ON runs (id) WHERE status IN ('queued', 'running');
    """,
    # Waiting runs (approval, a person's input, child runs) and sub-agents:
    # what a run waits for, since when, how long it has waited in all, how often
    # it was woken (each wake is a new job), and the run that started it.
    """
    ALTER TABLE runs ADD COLUMN waiting_for TEXT;
    ALTER TABLE runs ADD COLUMN waiting_since REAL;
    ALTER TABLE runs ADD COLUMN waited_seconds REAL NOT NULL DEFAULT 0;
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
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        delta TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    ALTER TABLE runs ADD COLUMN forked_from_run TEXT;
    ALTER TABLE runs ADD COLUMN forked_from_step INTEGER;
    ALTER TABLE runs ADD COLUMN checkpoints_pruned_at REAL;
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
        pid INTEGER NOT NULL,
        slots INTEGER NOT NULL,
        in_use INTEGER NOT NULL,
        started_at REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE TABLE autonomic_signals (
        observer TEXT NOT NULL,
        at REAL NOT NULL,
        name TEXT NOT NULL,
        subject TEXT NOT NULL,
        value REAL NOT NULL
    );
    CREATE INDEX autonomic_signals_at ON autonomic_signals (at);
    CREATE TABLE autonomic_diagnoses (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        confidence REAL NOT NULL,
        summary TEXT NOT NULL,
        evidence TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        cleared_at REAL
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
        spec TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (tenant_id, name, version)
    );
    ALTER TABLE agents ADD COLUMN version TEXT;
    ALTER TABLE runs ADD COLUMN agent_version TEXT;
    CREATE INDEX runs_agent_version ON runs (tenant_id, agent, agent_version, id);
    CREATE TABLE eval_results (
        tenant_id TEXT NOT NULL,
        eval_id TEXT NOT NULL,
        suite TEXT NOT NULL,
        agent TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        case_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        status TEXT NOT NULL,
        score REAL NOT NULL,
        passed INTEGER NOT NULL,
        checks TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (tenant_id, eval_id, case_id)
    );
    CREATE INDEX eval_results_version ON eval_results (tenant_id, agent, agent_version);
    """,
    # Rate limits shared by every process on the database (per key, user and
    # tenant), and who submitted each run (a member may cancel only its own).
    """
    CREATE TABLE rate_buckets (
        bucket TEXT PRIMARY KEY,
        tokens REAL NOT NULL,
        updated REAL NOT NULL
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
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        subject TEXT NOT NULL,
        details TEXT NOT NULL,
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
        value TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_at REAL NOT NULL,
        expires_at REAL
    );
    CREATE TABLE autonomic_decisions (
        id TEXT PRIMARY KEY,
        at REAL NOT NULL,
        observer TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        action TEXT NOT NULL,
        params TEXT NOT NULL,
        status TEXT NOT NULL,
        explanation TEXT NOT NULL,
        settle_at REAL NOT NULL,
        outcome TEXT,
        settled_at REAL,
        approved_by TEXT,
        error TEXT,
        updated_at REAL NOT NULL
    );
    CREATE INDEX autonomic_decisions_at ON autonomic_decisions (at);
    CREATE INDEX autonomic_decisions_kind ON autonomic_decisions (kind, action);
    """,
    # Encryption at rest (homeo/crypto): which tenants keep their runs sealed,
    # and their data keys, each wrapped by a key-encryption key of the key file.
    """
    CREATE TABLE tenant_encryption (
        tenant_id TEXT PRIMARY KEY,
        sensitive INTEGER NOT NULL,
        data_key_id TEXT,
        updated_at REAL NOT NULL
    );
    CREATE TABLE data_keys (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        kek_id TEXT NOT NULL,
        wrapped TEXT NOT NULL,
        created_at REAL NOT NULL
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
        state TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (tenant_id, search_id, generation)
    );
    """,
    # The model registry (homeo/evolve/registry.py) and curated training data sets.
    """
    CREATE TABLE datasets (
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        train TEXT NOT NULL,
        validation TEXT NOT NULL,
        provenance TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created_at REAL NOT NULL,
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
        metrics TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE model_alias_changes (
        alias TEXT NOT NULL,
        seq INTEGER NOT NULL,
        model_id TEXT NOT NULL,
        deployment TEXT NOT NULL,
        previous_model_id TEXT,
        action TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        at REAL NOT NULL,
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
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
    """,
    # What each worker process's sandboxed tools hit since it started
    # (homeo.sandbox.tally): the autonomic Monitor sums them across processes.
    """
    ALTER TABLE workers ADD COLUMN sandbox_runs INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workers ADD COLUMN sandbox_timeouts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workers ADD COLUMN sandbox_ooms INTEGER NOT NULL DEFAULT 0;
    """,
    # Each worker process's resident memory now and at its first heartbeat:
    # the autonomic loop recycles one that grew too much.
    """
    ALTER TABLE workers ADD COLUMN rss_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workers ADD COLUMN rss_start_bytes INTEGER NOT NULL DEFAULT 0;
    """,
]


# Runs a transaction of `free_space` prunes.
FREE_SPACE_BATCH = 20


class SQLiteStore(SQLStore):
    db: SQLiteDatabase

    def __init__(self, database: SQLiteDatabase) -> None:
        super().__init__(database, MIGRATIONS)

    def free_space(self, *, finished_before: float, now: float | None = None
                   ) -> tuple[PruneResult, int]:
        # Small transactions whose deletes write little to the WAL, then the
        # freed pages go back to the filesystem.
        before = self.db.files_size()
        with self.db.fast_deletes():
            pruned = self.prune_checkpoints(finished_before=finished_before,
                                            batch=FREE_SPACE_BATCH, now=now)
        self.db.give_back()
        return pruned, max(before - self.db.files_size(), 0)

    # --- runs -------------------------------------------------------------
    def create_run(self, new: NewRun, *, now: float | None = None) -> tuple[Run, bool]:
        if self.disk_floor is not None:
            self.disk_floor.check()  # DiskFull: no new work on a nearly full disk
        now = clock(now)
        sealer = self.sealer_for(new.tenant_id)
        with self.db.write() as db:
            if new.idempotency_key is not None:
                existing = db.execute(
                    "SELECT * FROM runs WHERE tenant_id = ? AND idempotency_key = ?",
                    (new.tenant_id, new.idempotency_key),
                ).fetchone()
                if existing is not None:
                    return self.run_of(existing), False  # type: ignore[return-value]
            row = db.execute(
                "INSERT INTO runs (id, tenant_id, agent, input, status, idempotency_key,"
                " request_id, parent_run_id, created_at, updated_at, checkpoint, forked_from_run,"
                " forked_from_step, agent_version, token_budget, user_id)"
                " VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING *",
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
        return self.run_of(row), True  # type: ignore[return-value]

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
        sources = sorted(allowed_from)
        marks = ",".join("?" for _ in sources)
        fenced, fence_params = (" AND lease_epoch = ?", (fence,)) if fence is not None else ("", ())
        output = self.text_value(self.sealer_for(tenant_id) if output is not None else None,
                                 output, "runs.output")
        with self.db.write() as db:
            row = db.execute(
                f"UPDATE runs SET status = ?, updated_at = ?,"
                " output = COALESCE(?, output), error = ?,"
                " started_at = CASE WHEN ? = 'running' THEN COALESCE(started_at, ?)"
                "   ELSE started_at END,"
                " finished_at = CASE WHEN ? IN ('succeeded','failed','cancelled') THEN ?"
                "   ELSE finished_at END"
                f" WHERE tenant_id = ? AND id = ? AND status IN ({marks}){fenced} RETURNING *",
                (status, now, output, error, status, now, status, now, tenant_id, run_id, *sources,
                 *fence_params),
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
        fenced, fence_params = (" AND lease_epoch = ?", (fence,)) if fence is not None else ("", ())
        sealer = self.sealer_for(tenant_id)
        # One statement (a step is begun on every step): insert the step if the
        # run is there and this writer's claim is the latest, or reuse a step
        # begun before and never finished. No row back: find out why.
        with self.db.statement() as db:
            row = db.execute(
                "INSERT INTO steps (run_id, tenant_id, seq, kind, name, status, input,"
                " started_at) SELECT id, tenant_id, ?, ?, ?, 'running', ?, ? FROM runs"
                f" WHERE tenant_id = ? AND id = ?{fenced}"
                " ON CONFLICT (run_id, seq) DO UPDATE SET status = 'running',"
                " attempts = steps.attempts + 1, error = NULL, input = excluded.input,"
                " started_at = excluded.started_at, finished_at = NULL"
                " WHERE steps.status <> 'succeeded' RETURNING *",
                (seq, kind, name, self.json_value(sealer, input, "steps.input"), now, tenant_id,
                 run_id, *fence_params),
            ).fetchone()
        if row is None:
            with self.db.write() as db:
                self.lock_run(db, tenant_id, run_id, fence)  # raises if missing or fenced
            raise StoreError(f"step {seq} of run {run_id} already succeeded")
        return self.step_of(row)

    def close(self) -> None:
        self.db.close()
