"""What the SQLite and PostgreSQL stores share: the same SQL, written once with
`?` parameter marks, run on the database's `Dialect` (homeo.db.dialect).

Each backend keeps for itself what the two databases do differently: creating
a run under an idempotency-key race, moving a run's status, beginning a step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from homeo.db.dialect import Dialect, clock
from homeo.ids import new_id
from homeo.store import deltas
from homeo.store.registry_sql import RegistrySQL
from homeo.store.base import CheckpointPruned, LeaseFenced, Store, StoreError
from homeo.store.sealed import Cipher, SealedDataError, Sealer, open_json, open_text
from homeo.store.models import (
    FINAL_STATUSES,
    AgentOutcomes,
    AgentRecord,
    AgentVersion,
    ApiKey,
    AuditEntry,
    AuditHead,
    ControlEntry,
    DecisionRecord,
    DataKeyRecord,
    DiagnosisRecord,
    EvalResult,
    PruneResult,
    Run,
    SignalRecord,
    Step,
    TenantEncryption,
    UiSession,
    UsageEvent,
    UsageTotals,
    WindowCounts,
    WorkerRecord,
    definition_version,
)

RUN_JSON = ("checkpoint", "waiting_for")
STEP_JSON = ("input", "output")
AGENT_JSON = ("spec",)
DIAGNOSIS_JSON = ("evidence",)
CONTROL_JSON = ("value",)
DECISION_JSON = ("params", "explanation")
EVAL_JSON = ("checks",)

T = TypeVar("T")



class SQLStore(RegistrySQL, Store):
    # Seals and opens the values of tenants marked sensitive (the runtime sets
    # it from HOMEO_ENCRYPTION_KEY_FILE); None: such a tenant's writes and
    # reads fail with SealedDataError rather than go in plain text.
    cipher: Cipher | None

    def __init__(self, database: Dialect, migrations: Sequence[str]) -> None:
        self.db = database
        # tenant -> data key id of the tenants seen marked sensitive: no look-up
        # on their writes after the first. Only "sensitive" is kept, so a tenant
        # marked sensitive elsewhere is sealed from this process's next write;
        # one marked plain elsewhere stays sealed here until a restart (safe).
        self._sensitive: dict[str, str] = {}
        self.inline_reads = database.inline_reads
        self.inline_writes = database.inline_writes
        database.migrate("store", migrations)  # type: ignore[attr-defined]

    def write_now(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.db.no_waiting():
            return call(*args, **kwargs)

    def one(self, text: str, params: Sequence[Any] = ()) -> Any:
        with self.db.read() as db:
            return db.execute(self.db.sql(text), params).fetchone()

    def all(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.db.read() as db:
            return db.execute(self.db.sql(text), params).fetchall()

    def run_of(self, row: Any) -> Run | None:
        if row is None:
            return None
        record = self.db.decode(row, RUN_JSON)
        tenant = record["tenant_id"]
        record["input"] = open_text(self.cipher, tenant, record["input"], "runs.input")
        record["output"] = open_text(self.cipher, tenant, record["output"], "runs.output")
        record["checkpoint"] = open_json(self.cipher, tenant, record["checkpoint"],
                                         "runs.checkpoint")
        return Run.model_validate(record)

    def step_of(self, row: Any) -> Step:
        record = self.db.decode(row, STEP_JSON)
        tenant = record["tenant_id"]
        record["input"] = open_json(self.cipher, tenant, record["input"], "steps.input")
        record["output"] = open_json(self.cipher, tenant, record["output"], "steps.output")
        return Step.model_validate(record)

    def sealer_for(self, tenant_id: str) -> Sealer | None:
        """How this write keeps the tenant's values: sealed with its data key
        when it is marked sensitive, else None (plain)."""
        known = self._sensitive.get(tenant_id)
        if known is not None and self.cipher is not None:
            return Sealer(self.cipher, tenant_id, known)
        row = self.one("SELECT sensitive, data_key_id FROM tenant_encryption"
                       " WHERE tenant_id = ?", (tenant_id,))
        if row is None or not row["sensitive"]:
            return None
        if self.cipher is None:
            raise SealedDataError(
                f"tenant {tenant_id} keeps its runs encrypted (data key {row['data_key_id']}):"
                " set HOMEO_ENCRYPTION_KEY_FILE to the key file that wraps it; homeo does"
                " not write them in plain text")
        self._sensitive[tenant_id] = row["data_key_id"]
        return Sealer(self.cipher, tenant_id, row["data_key_id"])

    def json_value(self, sealer: Sealer | None, value: Any, purpose: str) -> Any:
        """A JSON column's parameter: sealed for a sensitive tenant."""
        return self.db.json_param(value if sealer is None else sealer.json(value, purpose))

    @staticmethod
    def text_value(sealer: Sealer | None, value: str | None, purpose: str) -> str | None:
        return value if sealer is None else sealer.text(value, purpose)

    # --- runs -------------------------------------------------------------
    def get_run(self, tenant_id: str, run_id: str) -> Run | None:
        return self.run_of(self.one("SELECT * FROM runs WHERE tenant_id = ? AND id = ?",
                                    (tenant_id, run_id)))

    def run_status(self, tenant_id: str, run_id: str) -> str | None:
        row = self.one("SELECT status FROM runs WHERE tenant_id = ? AND id = ?",
                       (tenant_id, run_id))
        return None if row is None else row["status"]

    def list_runs(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        agent: str | None = None,
        limit: int = 50,
        before: str | None = None,
        agent_version: str | None = None,
    ) -> list[Run]:
        clauses, params = ["tenant_id = ?"], [tenant_id]
        for clause, value in (("status = ?", status), ("agent = ?", agent), ("id < ?", before),
                              ("agent_version = ?", agent_version)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = self.all(
            f"SELECT * FROM runs WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [self.run_of(row) for row in rows]  # type: ignore[misc]

    def claim_run(self, tenant_id: str, run_id: str, *, now: float | None = None) -> Run | None:
        now = clock(now)
        with self.db.statement() as db:
            row = db.execute(
                self.db.sql(
                    "UPDATE runs SET status = 'running', updated_at = ?, error = NULL,"
                    " started_at = COALESCE(started_at, ?),"
                    " stalls = CASE WHEN claimed_steps IS NULL THEN stalls"
                    "   WHEN claimed_steps = steps_done THEN stalls + 1 ELSE 0 END,"
                    " claimed_steps = steps_done, lease_epoch = lease_epoch + 1,"
                    # The first claim fixes the version the run executes.
                    " agent_version = COALESCE(agent_version, (SELECT agents.version FROM agents"
                    "   WHERE agents.tenant_id = runs.tenant_id AND agents.name = runs.agent))"
                    " WHERE tenant_id = ? AND id = ? AND status IN ('queued', 'running')"
                    " RETURNING *"
                ),
                (now, now, tenant_id, run_id),
            ).fetchone()
        return self.run_of(row)

    def release_run(
        self, tenant_id: str, run_id: str, *, fence: int, now: float | None = None
    ) -> Run | None:
        with self.db.statement() as db:
            row = db.execute(
                self.db.sql(
                    "UPDATE runs SET status = 'queued', updated_at = ?,"
                    " stalls = CASE WHEN claimed_steps = steps_done THEN stalls ELSE 0 END,"
                    " claimed_steps = NULL"
                    " WHERE tenant_id = ? AND id = ? AND status = 'running' AND lease_epoch = ?"
                    " RETURNING *"
                ),
                (clock(now), tenant_id, run_id, fence),
            ).fetchone()
        return self.run_of(row)

    def unsettled_runs(
        self, *, updated_before: float, after_id: str = "", limit: int = 100
    ) -> list[Run]:
        rows = self.all(
            "SELECT * FROM runs WHERE status IN ('queued', 'running') AND id > ?"
            " AND updated_at < ? ORDER BY id LIMIT ?",
            (after_id, updated_before, limit),
        )
        return [self.run_of(row) for row in rows]  # type: ignore[misc]

    def lock_run(self, db: Any, tenant_id: str, run_id: str, fence: int | None) -> Any:
        """Inside a write: lock the run's row, and refuse a writer whose claim
        (`fence`) is no longer the latest. Returns its lease_epoch and steps_done."""
        row = db.execute(
            self.db.sql("SELECT lease_epoch, steps_done FROM runs WHERE tenant_id = ? AND id = ?")
            + self.db.for_update,
            (tenant_id, run_id),
        ).fetchone()
        if row is None:
            raise StoreError(f"run {run_id} not found")
        if fence is not None and row["lease_epoch"] != fence:
            raise LeaseFenced(
                f"run {run_id} was claimed again (claim {row['lease_epoch']}, this"
                f" writer holds claim {fence}): its lease lapsed and another worker owns it"
            )
        return row

    def count_runs(self, tenant_id: str | None = None) -> dict[str, int]:
        where, params = ("WHERE tenant_id = ?", (tenant_id,)) if tenant_id is not None else (
            "", ())
        rows = self.all(f"SELECT status, COUNT(*) AS n FROM runs {where} GROUP BY status", params)
        return {row["status"]: row["n"] for row in rows}

    # --- steps ------------------------------------------------------------
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
        fence: int | None = None,
        now: float | None = None,
        previous: dict[str, Any] | None = None,
    ) -> Step:
        now = clock(now)
        fenced, fence_params = (" AND lease_epoch = ?", (fence,)) if fence is not None else ("", ())
        sealer = self.sealer_for(tenant_id)
        with self.db.write() as db:
            if previous is None:  # the caller does not hold it: read it back
                found = db.execute(
                    self.db.sql("SELECT checkpoint FROM runs WHERE tenant_id = ? AND id = ?"),
                    (tenant_id, run_id),
                ).fetchone()
                previous = None if found is None else open_json(
                    self.cipher, tenant_id, self.db.decode(found, ("checkpoint",))["checkpoint"],
                    "runs.checkpoint")
            # The run first (this locks its row, and checks the writer's claim).
            run = db.execute(
                self.db.sql(
                    "UPDATE runs SET checkpoint = ?, updated_at = ?, steps_done = steps_done + 1,"
                    " input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,"
                    f" cost_usd = cost_usd + ? WHERE tenant_id = ? AND id = ?{fenced}"
                    " RETURNING steps_done"
                ),
                (self.json_value(sealer, checkpoint, "runs.checkpoint"), now, input_tokens,
                 output_tokens, cost_usd, tenant_id, run_id, *fence_params),
            ).fetchone()
            if run is None:
                self.lock_run(db, tenant_id, run_id, fence)  # raises: missing or fenced
                raise StoreError(f"run {run_id} not found")
            # The step keeps what it changed since the run's previous checkpoint;
            # the run's first completed step keeps the whole state.
            before = None
            if run["steps_done"] > 1 and previous is not None:
                before = previous.get("state")
            delta = self.text_value(sealer, json.dumps(deltas.diff(before, checkpoint),
                                                       separators=(",", ":")),
                                    "step_checkpoints.delta")
            row = db.execute(
                self.db.sql(
                    "UPDATE steps SET status = 'succeeded', output = ?, finished_at = ?,"
                    " input_tokens = ?, output_tokens = ?, cost_usd = ?"
                    " WHERE tenant_id = ? AND run_id = ? AND seq = ? AND status = 'running'"
                    " RETURNING *"
                ),
                (self.json_value(sealer, output, "steps.output"), now, input_tokens,
                 output_tokens, cost_usd, tenant_id, run_id, seq),
            ).fetchone()
            if row is None:
                raise StoreError(f"step {seq} of run {run_id} is not running")
            db.execute(
                self.db.sql("INSERT INTO step_checkpoints (run_id, seq, delta) VALUES (?, ?, ?)"),
                (run_id, seq, delta),
            )
        return self.step_of(row)

    def suspend_run(
        self,
        tenant_id: str,
        run_id: str,
        seq: int,
        output: Any,
        checkpoint: dict[str, Any],
        wait: dict[str, Any],
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float = 0.0,
        fence: int | None = None,
        now: float | None = None,
        previous: dict[str, Any] | None = None,
    ) -> bool:
        now = clock(now)
        with self.db.write() as db:
            # complete_step locks the run's row first, so a child ending now
            # either ended before the count below or sees this run waiting.
            self.complete_step(tenant_id, run_id, seq, output, checkpoint,
                               input_tokens=input_tokens, output_tokens=output_tokens,
                               cost_usd=cost_usd, fence=fence, now=now, previous=previous)
            if wait["kind"] == "children":
                runs = list(wait["detail"]["runs"])
                marks = ",".join("?" for _ in runs)
                row = db.execute(self.db.sql(
                    f"SELECT COUNT(*) AS n FROM runs WHERE tenant_id = ? AND id IN ({marks})"
                    " AND status NOT IN ('succeeded', 'failed', 'cancelled')"),
                    (tenant_id, *runs)).fetchone()
                if row["n"] == 0:
                    return False
            db.execute(self.db.sql(
                "UPDATE runs SET status = 'waiting', waiting_for = ?, waiting_since = ?,"
                " updated_at = ? WHERE tenant_id = ? AND id = ?"),
                (self.db.json_param(wait), now, now, tenant_id, run_id))
        return True

    def resume_run(
        self,
        tenant_id: str,
        run_id: str,
        *,
        wait_id: str,
        checkpoint: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> Run | None:
        now = clock(now)
        with self.db.write() as db:
            row = db.execute(
                self.db.sql("SELECT waiting_for FROM runs WHERE tenant_id = ? AND id = ?"
                            " AND status = 'waiting'") + self.db.for_update,
                (tenant_id, run_id),
            ).fetchone()
            if row is None:
                return None
            waiting_for = self.db.decode(row, ("waiting_for",))["waiting_for"] or {}
            if waiting_for.get("id") != wait_id:
                return None
            sealer = self.sealer_for(tenant_id)
            if checkpoint is not None:
                self._rewrite_last_delta(db, tenant_id, run_id, checkpoint, sealer)
            updated = db.execute(self.db.sql(
                "UPDATE runs SET status = 'queued', checkpoint = COALESCE(?, checkpoint),"
                " waiting_for = NULL, waited_seconds = waited_seconds + (? - waiting_since),"
                " waiting_since = NULL, wakes = wakes + 1, updated_at = ?"
                " WHERE tenant_id = ? AND id = ? RETURNING *"),
                (self.json_value(sealer, checkpoint, "runs.checkpoint"), now, now, tenant_id,
                 run_id),
            ).fetchone()
        return self.run_of(updated)

    def _rewrite_last_delta(
        self, db: Any, tenant_id: str, run_id: str, checkpoint: dict[str, Any],
        sealer: Sealer | None,
    ) -> None:
        """The waiting step's kept checkpoint becomes `checkpoint` (its state with
        the person's answer), so the state shown at that step, and a fork from
        it, carry the answer too."""
        last = db.execute(self.db.sql(
            "SELECT MAX(seq) AS seq FROM step_checkpoints WHERE run_id = ?"), (run_id,)).fetchone()
        if last is None or last["seq"] is None:
            return
        seq = last["seq"]
        before = self.checkpoint_at(tenant_id, run_id, seq - 1) if seq > 0 else None
        delta = deltas.diff(None if before is None else before.get("state"), checkpoint)
        db.execute(self.db.sql("UPDATE step_checkpoints SET delta = ? WHERE run_id = ? AND seq = ?"),
                   (self.text_value(sealer, json.dumps(delta, separators=(",", ":")),
                                    "step_checkpoints.delta"), run_id, seq))

    def waiting_runs(self, *, after_id: str = "", limit: int = 100) -> list[Run]:
        rows = self.all("SELECT * FROM runs WHERE status = 'waiting' AND id > ?"
                        " ORDER BY id LIMIT ?", (after_id, limit))
        return [self.run_of(row) for row in rows]  # type: ignore[misc]

    def child_runs(self, tenant_id: str, parent_run_id: str) -> list[Run]:
        rows = self.all("SELECT * FROM runs WHERE tenant_id = ? AND parent_run_id = ?"
                        " ORDER BY id", (tenant_id, parent_run_id))
        return [self.run_of(row) for row in rows]  # type: ignore[misc]

    def fail_step(
        self,
        tenant_id: str,
        run_id: str,
        seq: int,
        error: str,
        *,
        status: str = "failed",
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float = 0.0,
        fence: int | None = None,
        now: float | None = None,
    ) -> Step:
        if status not in ("failed", "cancelled"):
            raise StoreError(f"a step ends as failed or cancelled, not {status!r}")
        now = clock(now)
        with self.db.write() as db:
            self.lock_run(db, tenant_id, run_id, fence)
            row = db.execute(
                self.db.sql(
                    "UPDATE steps SET status = ?, error = ?, finished_at = ?,"
                    " input_tokens = ?, output_tokens = ?, cost_usd = ?"
                    " WHERE tenant_id = ? AND run_id = ? AND seq = ? AND status = 'running'"
                    " RETURNING *"
                ),
                (status, error, now, input_tokens, output_tokens, cost_usd,
                 tenant_id, run_id, seq),
            ).fetchone()
            if row is None:
                raise StoreError(f"step {seq} of run {run_id} is not running")
            if input_tokens or output_tokens or cost_usd:
                db.execute(
                    self.db.sql(
                        "UPDATE runs SET updated_at = ?, input_tokens = input_tokens + ?,"
                        " output_tokens = output_tokens + ?, cost_usd = cost_usd + ?"
                        " WHERE tenant_id = ? AND id = ?"
                    ),
                    (now, input_tokens, output_tokens, cost_usd, tenant_id, run_id),
                )
        return self.step_of(row)

    def list_steps(self, tenant_id: str, run_id: str, *, after_seq: int = -1) -> list[Step]:
        rows = self.all(
            "SELECT * FROM steps WHERE tenant_id = ? AND run_id = ? AND seq > ? ORDER BY seq",
            (tenant_id, run_id, after_seq),
        )
        return [self.step_of(row) for row in rows]

    def checkpoint_at(self, tenant_id: str, run_id: str, seq: int) -> dict[str, Any] | None:
        rows = self.all(
            "SELECT steps.seq, steps.status, step_checkpoints.delta FROM steps"
            " LEFT JOIN step_checkpoints ON step_checkpoints.run_id = steps.run_id"
            " AND step_checkpoints.seq = steps.seq"
            " WHERE steps.tenant_id = ? AND steps.run_id = ? AND steps.seq <= ?"
            " ORDER BY steps.seq DESC",
            (tenant_id, run_id, seq),
        )
        if not rows or rows[0]["seq"] != seq or rows[0]["status"] != "succeeded":
            return None
        chain: list[dict[str, Any]] = []
        for row in rows:  # back to the nearest whole state
            if row["delta"] is None:
                return self._unkept(tenant_id, run_id, seq, row["seq"])
            chain.append(json.loads(open_text(self.cipher, tenant_id, row["delta"],
                                              "step_checkpoints.delta")))
            if deltas.is_whole(chain[-1]):
                return deltas.rebuild(reversed(chain))
        raise StoreError(f"the checkpoints of run {run_id} before step {seq} are incomplete")

    def _unkept(self, tenant_id: str, run_id: str, seq: int, missing: int) -> dict[str, Any]:
        """The state at step `seq` when the checkpoint of step `missing` is gone:
        the run's final state if that is the one asked for, else CheckpointPruned."""
        run = self.get_run(tenant_id, run_id)
        if run is None:
            raise StoreError(f"run {run_id} not found")
        if run.checkpoint is not None and run.checkpoint["seq"] == seq + 1:
            return run.checkpoint
        final = "" if run.checkpoint is None else (
            f"; its final state, after step {run.checkpoint['seq'] - 1}, is kept")
        if run.checkpoints_pruned_at is None:
            raise CheckpointPruned(
                f"step {missing} of run {run_id} kept no checkpoint (it ran before homeo kept"
                f" every step's checkpoint), so the state at step {seq} cannot be rebuilt{final}")
        when = datetime.fromtimestamp(run.checkpoints_pruned_at, UTC).isoformat(
            timespec="seconds")
        raise CheckpointPruned(
            f"the per-step checkpoints of run {run_id} were pruned at {when} (retention,"
            f" HOMEO_CHECKPOINT_RETENTION after a run finishes){final}")

    def prune_checkpoints(
        self,
        *,
        finished_before: float,
        dry_run: bool = False,
        batch: int = 500,
        now: float | None = None,
    ) -> PruneResult:
        now = clock(now)
        result = PruneResult()
        after = ""
        finished = ",".join(f"'{status}'" for status in sorted(FINAL_STATUSES))
        while True:
            with self.db.read() if dry_run else self.db.write() as db:
                ids = [row["id"] for row in db.execute(
                    self.db.sql(
                        "SELECT id FROM runs WHERE checkpoints_pruned_at IS NULL"
                        f" AND finished_at IS NOT NULL AND finished_at < ? AND status IN ({finished})"
                        " AND id > ? ORDER BY id LIMIT ?"
                    ),
                    (finished_before, after, batch),
                ).fetchall()]
                if not ids:
                    return result
                marks = ",".join("?" for _ in ids)
                kept = db.execute(
                    self.db.sql(
                        "SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(delta)), 0)"
                        f" AS size FROM step_checkpoints WHERE run_id IN ({marks})"
                    ),
                    ids,
                ).fetchone()
                if not dry_run:
                    db.execute(
                        self.db.sql(f"DELETE FROM step_checkpoints WHERE run_id IN ({marks})"),
                        ids,
                    )
                    db.execute(
                        self.db.sql(
                            f"UPDATE runs SET checkpoints_pruned_at = ? WHERE id IN ({marks})"),
                        (now, *ids),
                    )
            result.runs += len(ids)
            result.checkpoints += int(kept["n"])
            result.bytes += int(kept["size"])
            after = ids[-1]

    # --- usage ------------------------------------------------------------
    def usage(
        self, tenant_id: str, *, since: float = 0.0, agent: str | None = None
    ) -> UsageTotals:
        used = (
            "SELECT steps.input_tokens, steps.output_tokens, steps.cost_usd FROM steps"
            + (" JOIN runs ON runs.id = steps.run_id AND runs.agent = ?" if agent else "")
            + " WHERE steps.tenant_id = ? AND steps.status IN ('succeeded', 'failed', 'cancelled')"
            " AND steps.finished_at >= ?"
        )
        params: tuple[Any, ...] = (agent, tenant_id, since) if agent else (tenant_id, since)
        if agent is None:  # direct model calls count for the tenant, not for an agent
            used += (
                " UNION ALL SELECT input_tokens, output_tokens, cost_usd FROM usage_events"
                " WHERE tenant_id = ? AND at >= ?"
            )
            params += (tenant_id, since)
        row = self.one(
            "SELECT COALESCE(SUM(input_tokens), 0) AS input_tokens,"
            " COALESCE(SUM(output_tokens), 0) AS output_tokens,"
            f" COALESCE(SUM(cost_usd), 0) AS cost_usd FROM ({used}) AS used",
            params,
        )
        # PostgreSQL sums BIGINT as NUMERIC: back to int and float.
        return UsageTotals(input_tokens=int(row["input_tokens"]),
                           output_tokens=int(row["output_tokens"]),
                           cost_usd=float(row["cost_usd"]))

    def record_usage(self, events: Sequence[UsageEvent]) -> None:
        rows = [(event.tenant_id, event.source, event.model, event.input_tokens,
                 event.output_tokens, event.cost_usd, event.at) for event in events]
        with self.db.write() as db:
            db.cursor().executemany(
                self.db.sql(
                    "INSERT INTO usage_events (tenant_id, source, model, input_tokens,"
                    " output_tokens, cost_usd, at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                ),
                rows,
            )

    # --- agents -----------------------------------------------------------
    def put_agent(
        self,
        tenant_id: str,
        name: str,
        spec: dict[str, Any],
        *,
        author: str = "folder",
        now: float | None = None,
    ) -> AgentRecord:
        now = clock(now)
        version = definition_version(spec)
        with self.db.write() as db:
            current = db.execute(
                self.db.sql("SELECT version FROM agents WHERE tenant_id = ? AND name = ?")
                + self.db.for_update, (tenant_id, name)).fetchone()
            parent = current["version"] if current is not None else None
            if parent is None:  # a new agent, or one removed before: its newest version
                newest = db.execute(self.db.sql(
                    "SELECT version FROM agent_versions WHERE tenant_id = ? AND name = ?"
                    " ORDER BY created_at DESC LIMIT 1"), (tenant_id, name)).fetchone()
                parent = newest["version"] if newest is not None else None
            # A definition it had before keeps its first record (parent, author, time).
            db.execute(
                self.db.sql(
                    "INSERT INTO agent_versions (tenant_id, name, version, parent, author, spec,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (tenant_id, name, version) DO NOTHING"
                ),
                (tenant_id, name, version, None if parent == version else parent, author,
                 self.db.json_param(spec), now),
            )
            db.execute(
                self.db.sql(
                    "INSERT INTO agents (tenant_id, name, spec, updated_at, version)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, name) DO UPDATE SET"
                    " spec = excluded.spec, updated_at = excluded.updated_at,"
                    " version = excluded.version"
                ),
                (tenant_id, name, self.db.json_param(spec), now, version),
            )
        return AgentRecord(tenant_id=tenant_id, name=name, spec=spec, updated_at=now,
                           version=version)

    def get_agent_version(self, tenant_id: str, name: str, version: str) -> AgentVersion | None:
        row = self.one("SELECT * FROM agent_versions WHERE tenant_id = ? AND name = ?"
                       " AND version = ?", (tenant_id, name, version))
        return None if row is None else AgentVersion.model_validate(
            self.db.decode(row, AGENT_JSON))

    def list_agent_versions(self, tenant_id: str, name: str) -> list[AgentVersion]:
        rows = self.all("SELECT * FROM agent_versions WHERE tenant_id = ? AND name = ?"
                        " ORDER BY created_at, version", (tenant_id, name))
        return [AgentVersion.model_validate(self.db.decode(row, AGENT_JSON)) for row in rows]

    # --- evaluations --------------------------------------------------------
    def put_eval_results(self, results: Sequence[EvalResult]) -> None:
        rows = [(r.tenant_id, r.eval_id, r.suite, r.agent, r.agent_version, r.case_id, r.run_id,
                 r.status, r.score, r.passed, self.db.json_param(r.checks), r.at)
                for r in results]
        with self.db.write() as db:
            db.cursor().executemany(
                self.db.sql(
                    "INSERT INTO eval_results (tenant_id, eval_id, suite, agent, agent_version,"
                    " case_id, run_id, status, score, passed, checks, at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                rows,
            )

    def list_eval_results(
        self,
        tenant_id: str,
        agent: str,
        *,
        agent_version: str | None = None,
        suite: str | None = None,
    ) -> list[EvalResult]:
        clauses, params = ["tenant_id = ?", "agent = ?"], [tenant_id, agent]
        for clause, value in (("agent_version = ?", agent_version), ("suite = ?", suite)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = self.all(f"SELECT * FROM eval_results WHERE {' AND '.join(clauses)}"
                        " ORDER BY at, eval_id, case_id", params)
        return [EvalResult.model_validate(self.db.decode(row, EVAL_JSON)) for row in rows]

    # --- evolutionary searches ----------------------------------------------
    def put_evolve_generation(self, tenant_id: str, search_id: str, generation: int,
                              state: dict[str, Any], *, now: float | None = None) -> None:
        with self.db.write() as db:
            db.execute(self.db.sql("DELETE FROM evolve_generations WHERE tenant_id = ?"
                                   " AND search_id = ? AND generation = ?"),
                       (tenant_id, search_id, generation))
            db.execute(self.db.sql("INSERT INTO evolve_generations (tenant_id, search_id,"
                                   " generation, state, at) VALUES (?, ?, ?, ?, ?)"),
                       (tenant_id, search_id, generation, self.db.json_param(state), clock(now)))

    def latest_evolve_generation(self, tenant_id: str,
                                 search_id: str) -> tuple[int, dict[str, Any]] | None:
        row = self.one("SELECT generation, state FROM evolve_generations WHERE tenant_id = ?"
                       " AND search_id = ? ORDER BY generation DESC LIMIT 1",
                       (tenant_id, search_id))
        if row is None:
            return None
        record = self.db.decode(row, ("state",))
        return int(record["generation"]), record["state"]

    def get_agent(self, tenant_id: str, name: str) -> AgentRecord | None:
        row = self.one("SELECT * FROM agents WHERE tenant_id = ? AND name = ?", (tenant_id, name))
        return None if row is None else AgentRecord.model_validate(self.db.decode(row, AGENT_JSON))

    def list_agents(self, tenant_id: str) -> list[AgentRecord]:
        rows = self.all(f"SELECT * FROM agents WHERE tenant_id = ? ORDER BY {self.db.name_order}",
                        (tenant_id,))
        return [AgentRecord.model_validate(self.db.decode(row, AGENT_JSON)) for row in rows]

    def delete_agent(self, tenant_id: str, name: str) -> bool:
        with self.db.write() as db:
            deleted = db.execute(
                self.db.sql("DELETE FROM agents WHERE tenant_id = ? AND name = ?"), (tenant_id, name)
            )
            return deleted.rowcount > 0

    # --- API keys ---------------------------------------------------------
    def put_key(self, key: ApiKey) -> None:
        try:
            with self.db.write() as db:
                db.execute(
                    self.db.sql(
                        "INSERT INTO api_keys (id, tenant_id, name, role, secret_hash,"
                        " created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    ),
                    (key.id, key.tenant_id, key.name, key.role, key.secret_hash,
                     key.created_at, key.revoked_at),
                )
        except self.db.duplicate_error:
            raise StoreError(f"an API key with id {key.id!r} exists") from None

    def get_key(self, key_id: str) -> ApiKey | None:
        row = self.one("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return None if row is None else ApiKey.model_validate(self.db.decode(row))

    def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        where, params = ("WHERE tenant_id = ?", (tenant_id,)) if tenant_id is not None else (
            "", ())
        rows = self.all(f"SELECT * FROM api_keys {where} ORDER BY created_at, id", params)
        return [ApiKey.model_validate(self.db.decode(row)) for row in rows]

    def revoke_key(self, key_id: str, *, now: float | None = None) -> ApiKey | None:
        with self.db.write() as db:
            db.execute(
                self.db.sql("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"),
                (clock(now), key_id),
            )
        return self.get_key(key_id)

    # --- dashboard sessions ------------------------------------------------
    def put_ui_session(self, session: UiSession) -> None:
        with self.db.write() as db:
            db.execute(self.db.sql("DELETE FROM ui_sessions WHERE expires_at < ?"),
                       (session.created_at,))
            db.execute(
                self.db.sql(
                    "INSERT INTO ui_sessions (id, tenant_id, key_id, user_id, role,"
                    " created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                (session.id, session.tenant_id, session.key_id, session.user_id,
                 session.role, session.created_at, session.expires_at, session.revoked_at),
            )

    def get_ui_session(self, session_id: str) -> UiSession | None:
        row = self.one("SELECT * FROM ui_sessions WHERE id = ?", (session_id,))
        return None if row is None else UiSession.model_validate(self.db.decode(row))

    def revoke_ui_session(self, session_id: str, *, now: float | None = None) -> bool:
        with self.db.write() as db:
            changed = db.execute(
                self.db.sql("UPDATE ui_sessions SET revoked_at = ?"
                            " WHERE id = ? AND revoked_at IS NULL"),
                (clock(now), session_id),
            ).rowcount
        return changed > 0

    # --- workers and the autonomic loop -------------------------------------
    def beat_worker(self, worker: WorkerRecord) -> None:
        with self.db.statement() as db:
            db.execute(
                self.db.sql(
                    "INSERT INTO workers (id, host, pid, slots, in_use, started_at, last_seen,"
                    " sandbox_runs, sandbox_timeouts, sandbox_ooms, rss_bytes, rss_start_bytes)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                    " slots = excluded.slots, in_use = excluded.in_use,"
                    " last_seen = excluded.last_seen, sandbox_runs = excluded.sandbox_runs,"
                    " sandbox_timeouts = excluded.sandbox_timeouts,"
                    " sandbox_ooms = excluded.sandbox_ooms, rss_bytes = excluded.rss_bytes,"
                    " rss_start_bytes = excluded.rss_start_bytes"
                ),
                (worker.id, worker.host, worker.pid, worker.slots, worker.in_use,
                 worker.started_at, worker.last_seen, worker.sandbox_runs,
                 worker.sandbox_timeouts, worker.sandbox_ooms, worker.rss_bytes,
                 worker.rss_start_bytes),
            )

    def list_workers(self) -> list[WorkerRecord]:
        return [WorkerRecord.model_validate(self.db.decode(row))
                for row in self.all("SELECT * FROM workers ORDER BY id")]

    def forget_worker(self, worker_id: str) -> bool:
        with self.db.statement() as db:
            return db.execute(self.db.sql("DELETE FROM workers WHERE id = ?"),
                              (worker_id,)).rowcount > 0

    def agent_outcomes(self, *, since: float, until: float) -> list[AgentOutcomes]:
        rows = self.all(
            "SELECT runs.tenant_id, runs.agent, COUNT(*) AS total,"
            " COALESCE(SUM(CASE WHEN runs.status = 'failed' THEN 1 ELSE 0 END), 0) AS failed"
            " FROM runs LEFT JOIN agents"
            "   ON agents.tenant_id = runs.tenant_id AND agents.name = runs.agent"
            " WHERE runs.status IN ('succeeded', 'failed')"
            " AND runs.finished_at >= ? AND runs.finished_at < ?"
            " AND (agents.version IS NULL OR runs.agent_version IS NULL"
            "      OR runs.agent_version = agents.version)"
            " GROUP BY runs.tenant_id, runs.agent ORDER BY runs.tenant_id, runs.agent",
            (since, until),
        )
        # PostgreSQL sums as NUMERIC: back to int.
        return [AgentOutcomes(tenant_id=row["tenant_id"], agent=row["agent"],
                              total=int(row["total"]), failed=int(row["failed"]))
                for row in rows]

    def put_signals(self, signals: Sequence[SignalRecord], *, keep_after: float) -> None:
        rows = [(signal.observer, signal.at, signal.name, signal.subject, signal.value)
                for signal in signals]
        with self.db.write() as db:
            db.execute(self.db.sql("DELETE FROM autonomic_signals WHERE at < ?"), (keep_after,))
            if rows:
                db.cursor().executemany(
                    self.db.sql("INSERT INTO autonomic_signals (observer, at, name, subject,"
                                " value) VALUES (?, ?, ?, ?, ?)"),
                    rows,
                )

    def latest_signals(self, *, since: float) -> list[SignalRecord]:
        rows = self.all(
            "SELECT s.* FROM autonomic_signals AS s JOIN (SELECT observer, MAX(at) AS at"
            " FROM autonomic_signals WHERE at >= ? GROUP BY observer) AS newest"
            " ON s.observer = newest.observer AND s.at = newest.at"
            " ORDER BY s.observer, s.name, s.subject",
            (since,),
        )
        return [SignalRecord.model_validate(self.db.decode(row)) for row in rows]

    def note_diagnoses(
        self, diagnoses: Sequence[DiagnosisRecord], *, now: float, keep_after: float
    ) -> list[DiagnosisRecord]:
        seen = {(diagnosis.kind, diagnosis.subject) for diagnosis in diagnoses}
        with self.db.write() as db:
            open_rows = db.execute(
                self.db.sql("SELECT id, kind, subject FROM autonomic_diagnoses"
                            " WHERE cleared_at IS NULL") + self.db.for_update
            ).fetchall()
            held = {(row["kind"], row["subject"]): row["id"] for row in open_rows}
            for diagnosis in diagnoses:
                values = (diagnosis.confidence, diagnosis.summary,
                          self.db.json_param(diagnosis.evidence), now)
                known = held.get((diagnosis.kind, diagnosis.subject))
                if known is not None:
                    db.execute(
                        self.db.sql("UPDATE autonomic_diagnoses SET confidence = ?, summary = ?,"
                                    " evidence = ?, last_seen = ? WHERE id = ?"),
                        (*values, known),
                    )
                else:
                    db.execute(
                        self.db.sql("INSERT INTO autonomic_diagnoses (id, kind, subject,"
                                    " confidence, summary, evidence, last_seen, first_seen)"
                                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                        (new_id("diag", now), diagnosis.kind, diagnosis.subject, *values, now),
                    )
            for key, known in held.items():
                if key not in seen:
                    db.execute(
                        self.db.sql("UPDATE autonomic_diagnoses SET cleared_at = ? WHERE id = ?"),
                        (now, known),
                    )
            db.execute(
                self.db.sql("DELETE FROM autonomic_diagnoses WHERE cleared_at < ?"),
                (keep_after,),
            )
        return self.list_diagnoses(open_only=True, limit=max(len(diagnoses), 1))

    def list_diagnoses(self, *, open_only: bool = False, limit: int = 50) -> list[DiagnosisRecord]:
        where = "WHERE cleared_at IS NULL " if open_only else ""
        rows = self.all(f"SELECT * FROM autonomic_diagnoses {where}"
                        "ORDER BY last_seen DESC, id DESC LIMIT ?", (limit,))
        return [DiagnosisRecord.model_validate(self.db.decode(row, DIAGNOSIS_JSON))
                for row in rows]
    # --- shared control state and the loop's decisions ---------------------
    def set_control(self, entry: ControlEntry) -> None:
        with self.db.statement() as db:
            db.execute(
                self.db.sql(
                    "INSERT INTO control (key, value, set_by, set_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                    " value = excluded.value, set_by = excluded.set_by,"
                    " set_at = excluded.set_at, expires_at = excluded.expires_at"
                ),
                (entry.key, self.db.json_param(entry.value), entry.set_by, entry.set_at,
                 entry.expires_at),
            )

    def delete_control(self, key: str) -> bool:
        with self.db.statement() as db:
            return db.execute(self.db.sql("DELETE FROM control WHERE key = ?"),
                              (key,)).rowcount > 0

    def list_control(self, *, now: float) -> list[ControlEntry]:
        rows = self.all("SELECT * FROM control WHERE expires_at IS NULL OR expires_at > ?"
                        " ORDER BY key", (now,))
        return [ControlEntry.model_validate(self.db.decode(row, CONTROL_JSON)) for row in rows]

    def put_decision(self, decision: DecisionRecord) -> None:
        d = decision
        with self.db.statement() as db:
            db.execute(
                self.db.sql(
                    "INSERT INTO autonomic_decisions (id, at, observer, kind, subject, action,"
                    " params, status, explanation, settle_at, outcome, settled_at, approved_by,"
                    " error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                (d.id, d.at, d.observer, d.kind, d.subject, d.action,
                 self.db.json_param(d.params), d.status, self.db.json_param(d.explanation),
                 d.settle_at, d.outcome, d.settled_at, d.approved_by, d.error,
                 d.updated_at or d.at),
            )

    def update_decision(
        self, decision_id: str, *, from_status: Sequence[str], now: float, **changes: Any
    ) -> DecisionRecord | None:
        allowed = {"status", "outcome", "settled_at", "approved_by", "error", "settle_at"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"a decision has no settable field {sorted(unknown)}")
        sets = ", ".join(f"{name} = ?" for name in changes)
        marks = ", ".join("?" for _ in from_status)
        with self.db.statement() as db:
            row = db.execute(
                self.db.sql(f"UPDATE autonomic_decisions SET {sets}, updated_at = ?"
                            f" WHERE id = ? AND status IN ({marks}) RETURNING *"),
                (*changes.values(), now, decision_id, *from_status),
            ).fetchone()
        return None if row is None else self._decision(row)

    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        rows = self.all("SELECT * FROM autonomic_decisions WHERE id = ?", (decision_id,))
        return self._decision(rows[0]) if rows else None

    def list_decisions(
        self, *, statuses: Sequence[str] | None = None, since: float | None = None,
        limit: int = 50,
    ) -> list[DecisionRecord]:
        where, params = [], []
        if statuses is not None:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self.all(f"SELECT * FROM autonomic_decisions {clause}"
                        "ORDER BY at DESC, id DESC LIMIT ?", (*params, limit))
        return [self._decision(row) for row in rows]

    def count_decisions(self, *, since: float) -> int:
        rows = self.all("SELECT COUNT(*) AS n FROM autonomic_decisions WHERE at >= ?", (since,))
        return int(rows[0]["n"])

    def decision_tally(self, kind: str) -> dict[str, tuple[int, int]]:
        rows = self.all(
            "SELECT action, COALESCE(SUM(CASE WHEN outcome = 'cleared' THEN 1 ELSE 0 END), 0)"
            " AS cleared, COALESCE(SUM(CASE WHEN outcome = 'persisted' THEN 1 ELSE 0 END), 0)"
            " AS persisted FROM autonomic_decisions WHERE kind = ? AND outcome IS NOT NULL"
            " AND status IN ('executed', 'reverted', 'done') GROUP BY action",
            (kind,),
        )
        return {row["action"]: (int(row["cleared"]), int(row["persisted"])) for row in rows}

    def _decision(self, row: Any) -> DecisionRecord:
        return DecisionRecord.model_validate(self.db.decode(row, DECISION_JSON))

    # --- who submitted a run ---------------------------------------------
    def record_submitter(self, tenant_id: str, run_id: str, principal: str) -> str:
        with self.db.write() as db:
            db.execute(
                self.db.sql(
                    "INSERT INTO run_submitters (tenant_id, run_id, principal) VALUES (?, ?, ?)"
                    " ON CONFLICT (tenant_id, run_id) DO NOTHING"
                ),
                (tenant_id, run_id, principal),
            )
            row = db.execute(
                self.db.sql(
                    "SELECT principal FROM run_submitters WHERE tenant_id = ? AND run_id = ?"),
                (tenant_id, run_id),
            ).fetchone()
        return row["principal"]

    def run_submitter(self, tenant_id: str, run_id: str) -> str | None:
        row = self.one("SELECT principal FROM run_submitters WHERE tenant_id = ? AND run_id = ?",
                       (tenant_id, run_id))
        return None if row is None else row["principal"]

    # --- rate limits --------------------------------------------------------
    def take_rate_tokens(
        self, buckets: Sequence[tuple[str, int, float]], *, now: float | None = None
    ) -> dict[str, float]:
        now = clock(now)
        # Sorted: two takers lock shared buckets in the same order, never in a cycle.
        wanted = {name: (calls, period) for name, calls, period in sorted(buckets)}
        if not wanted:
            return {}
        marks = ", ".join("?" for _ in wanted)
        select = self.db.sql(f"SELECT bucket, tokens, updated FROM rate_buckets"
                             f" WHERE bucket IN ({marks}) ORDER BY bucket") + self.db.for_update
        with self.db.write() as db:
            rows = db.execute(select, tuple(wanted)).fetchall()
            if len(rows) < len(wanted):  # first use of a bucket: it starts full
                db.cursor().executemany(
                    self.db.sql("INSERT INTO rate_buckets (bucket, tokens, updated)"
                                " VALUES (?, ?, ?) ON CONFLICT (bucket) DO NOTHING"),
                    [(name, float(calls), now) for name, (calls, _) in wanted.items()],
                )
                rows = db.execute(select, tuple(wanted)).fetchall()
            refilled: list[tuple[float, float, str]] = []
            short: dict[str, float] = {}
            for row in rows:
                calls, period = wanted[row["bucket"]]
                rate = calls / period
                tokens = min(float(calls), row["tokens"] + max(0.0, now - row["updated"]) * rate)
                refilled.append((tokens - 1.0, max(row["updated"], now), row["bucket"]))
                if tokens < 1.0:
                    short[row["bucket"]] = (1.0 - tokens) / rate
            if short:
                return short
            db.cursor().executemany(
                self.db.sql("UPDATE rate_buckets SET tokens = ?, updated = ? WHERE bucket = ?"),
                refilled,
            )
        return {}

    def rate_token_wait(
        self, bucket: str, calls: int, period_seconds: float, *, now: float | None = None
    ) -> float:
        now = clock(now)
        row = self.one("SELECT tokens, updated FROM rate_buckets WHERE bucket = ?", (bucket,))
        if row is None:
            return 0.0
        rate = calls / period_seconds
        tokens = min(float(calls), row["tokens"] + max(0.0, now - row["updated"]) * rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate

    def forget_rate_buckets(self, prefix: str, idle_seconds: float, *,
                            now: float | None = None) -> int:
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.db.write() as db:
            return db.execute(
                self.db.sql("DELETE FROM rate_buckets WHERE bucket LIKE ? ESCAPE '\\'"
                            " AND updated < ?"),
                (pattern, clock(now) - idle_seconds),
            ).rowcount

    # --- the audit log ----------------------------------------------------
    @contextmanager
    def atomic(self) -> Iterator[None]:
        with self.db.write():
            yield

    def append_audit(
        self, tenant_id: str, seal: Callable[[int, str], tuple[AuditEntry, AuditHead]]
    ) -> AuditEntry:
        head_sql = self.db.sql("SELECT seq, hash FROM audit_heads WHERE tenant_id = ?")
        with self.db.write() as db:
            # The head row is the lock appenders of one tenant queue on.
            db.execute(
                self.db.sql("INSERT INTO audit_heads (tenant_id, seq, hash, key_id, signature)"
                            " VALUES (?, 0, ?, '', '') ON CONFLICT (tenant_id) DO NOTHING"),
                (tenant_id, "0" * 64),
            )
            head = db.execute(head_sql + self.db.for_update, (tenant_id,)).fetchone()
            entry, new_head = seal(head["seq"] + 1, head["hash"])
            db.execute(
                self.db.sql(
                    "INSERT INTO audit_log (tenant_id, seq, at, kind, actor, subject, details,"
                    " prev_hash, hash, key_id, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                (entry.tenant_id, entry.seq, entry.at, entry.kind, entry.actor, entry.subject,
                 self.db.json_param(entry.details), entry.prev_hash, entry.hash, entry.key_id,
                 entry.signature),
            )
            db.execute(
                self.db.sql("UPDATE audit_heads SET seq = ?, hash = ?, key_id = ?, signature = ?"
                            " WHERE tenant_id = ?"),
                (new_head.seq, new_head.hash, new_head.key_id, new_head.signature, tenant_id),
            )
        return entry

    def list_audit(
        self, tenant_id: str, *, after_seq: int = 0, limit: int | None = None,
        kind: str | None = None,
    ) -> list[AuditEntry]:
        clauses, params = ["tenant_id = ?", "seq > ?"], [tenant_id, after_seq]
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        limited = "" if limit is None else f" LIMIT {int(limit)}"
        rows = self.all(f"SELECT * FROM audit_log WHERE {' AND '.join(clauses)}"
                        f" ORDER BY seq{limited}", params)
        return [AuditEntry.model_validate(self.db.decode(row, ("details",))) for row in rows]

    def audit_head(self, tenant_id: str) -> AuditHead | None:
        row = self.one("SELECT * FROM audit_heads WHERE tenant_id = ? AND seq > 0", (tenant_id,))
        return None if row is None else AuditHead.model_validate(self.db.decode(row))

    def audit_tenants(self) -> list[str]:
        rows = self.all("SELECT tenant_id FROM audit_heads UNION"
                        " SELECT DISTINCT tenant_id FROM audit_log ORDER BY tenant_id")
        return [row["tenant_id"] for row in rows]

    # --- encryption at rest -----------------------------------------------
    def tenant_encryption(self, tenant_id: str) -> TenantEncryption | None:
        row = self.one("SELECT * FROM tenant_encryption WHERE tenant_id = ?", (tenant_id,))
        return None if row is None else TenantEncryption.model_validate(self.db.decode(row))

    def set_tenant_encryption(self, setting: TenantEncryption) -> None:
        with self.db.write() as db:
            db.execute(self.db.sql(
                "INSERT INTO tenant_encryption (tenant_id, sensitive, data_key_id, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id) DO UPDATE SET"
                " sensitive = excluded.sensitive, data_key_id = excluded.data_key_id,"
                " updated_at = excluded.updated_at"),
                (setting.tenant_id, setting.sensitive, setting.data_key_id, setting.updated_at))
        if not setting.sensitive:
            self._sensitive.pop(setting.tenant_id, None)

    def put_data_key(self, key: DataKeyRecord) -> None:
        with self.db.write() as db:
            db.execute(self.db.sql(
                "INSERT INTO data_keys (id, tenant_id, kek_id, wrapped, created_at)"
                " VALUES (?, ?, ?, ?, ?)"),
                (key.id, key.tenant_id, key.kek_id, key.wrapped, key.created_at))

    def get_data_key(self, key_id: str) -> DataKeyRecord | None:
        row = self.one("SELECT * FROM data_keys WHERE id = ?", (key_id,))
        return None if row is None else DataKeyRecord.model_validate(self.db.decode(row))

    def data_keys_not_wrapped_by(self, kek_id: str, *, limit: int = 100) -> list[DataKeyRecord]:
        rows = self.all("SELECT * FROM data_keys WHERE kek_id <> ? ORDER BY id LIMIT ?",
                        (kek_id, limit))
        return [DataKeyRecord.model_validate(self.db.decode(row)) for row in rows]

    def rewrap_data_key(self, key_id: str, from_kek: str, to_kek: str, wrapped: str) -> bool:
        with self.db.statement() as db:
            row = db.execute(self.db.sql(
                "UPDATE data_keys SET kek_id = ?, wrapped = ? WHERE id = ? AND kek_id = ?"
                " RETURNING id"), (to_kek, wrapped, key_id, from_kek)).fetchone()
        return row is not None

    def data_keys_per_kek(self) -> dict[str, int]:
        rows = self.all("SELECT kek_id, COUNT(*) AS n FROM data_keys GROUP BY kek_id")
        return {row["kek_id"]: int(row["n"]) for row in rows}

    def sensitive_tenants(self) -> list[str]:
        rows = self.all("SELECT tenant_id FROM tenant_encryption WHERE sensitive"
                        " ORDER BY tenant_id")
        return [row["tenant_id"] for row in rows]

    def ping(self) -> None:
        self.one("SELECT 1")

    # --- SLOs (read-only) -------------------------------------------------
    def run_outcomes(
        self,
        starts: Sequence[float],
        *,
        until: float,
        tenant_id: str | None = None,
        agent: str | None = None,
    ) -> list[WindowCounts]:
        clauses = ["status IN ('succeeded', 'failed')", "finished_at >= ?", "finished_at < ?"]
        params: list[Any] = [min(starts, default=until), until]
        for clause, value in (("tenant_id = ?", tenant_id), ("agent = ?", agent)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return self._windows(starts, "runs", "finished_at", "status = 'succeeded'", (),
                             " AND ".join(clauses), params)

    def step_speeds(
        self,
        starts: Sequence[float],
        *,
        until: float,
        within_seconds: float,
        tenant_id: str | None = None,
        kind: str | None = None,
    ) -> list[WindowCounts]:
        clauses = ["status = 'succeeded'", "finished_at >= ?", "finished_at < ?"]
        params: list[Any] = [min(starts, default=until), until]
        for clause, value in (("tenant_id = ?", tenant_id), ("kind = ?", kind)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return self._windows(starts, "steps", "finished_at", "finished_at - started_at <= ?",
                             (within_seconds,), " AND ".join(clauses), params)

    def _windows(
        self,
        starts: Sequence[float],
        table: str,
        at: str,
        good: str,
        good_params: tuple[Any, ...],
        where: str,
        params: Sequence[Any],
    ) -> list[WindowCounts]:
        """One scan counting, for each start, the rows at or after it and the good ones."""
        if not starts:
            return []
        columns, column_params = [], []
        for index, start in enumerate(starts):
            columns.append(f"COALESCE(SUM(CASE WHEN {at} >= ? THEN 1 ELSE 0 END), 0) AS t{index},"
                           f" COALESCE(SUM(CASE WHEN {at} >= ? AND {good} THEN 1 ELSE 0 END), 0)"
                           f" AS g{index}")
            column_params += [start, start, *good_params]
        row = self.one(f"SELECT {', '.join(columns)} FROM {table} WHERE {where}",
                       (*column_params, *params))
        # PostgreSQL sums as NUMERIC: back to int.
        return [WindowCounts(since=start, total=int(row[f"t{index}"]), good=int(row[f"g{index}"]))
                for index, start in enumerate(starts)]
