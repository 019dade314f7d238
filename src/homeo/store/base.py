"""The store interface: every backend (SQLite, PostgreSQL) implements `Store`
and passes the one contract suite in tests/store/test_contract.py.

Every method takes a `tenant_id` and never returns another tenant's records,
except the API key methods: a key is how a caller's tenant is found.
Times are epoch seconds; `now` may be passed so tests control the clock.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, suppress
from typing import Any, TypeVar

from homeo.db.dialect import WouldWait
from homeo.store.models import (
    AliasChange,
    DatasetRecord,
    ModelRecord,
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
    NewRun,
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
)


class StoreError(Exception):
    """The store refused an operation (for example, a step out of order)."""


class LeaseFenced(StoreError):
    """A newer claim of the run exists: the writer's lease lapsed and another
    worker owns the run now. The writer must stop without touching the run."""


class CheckpointPruned(StoreError):
    """The checkpoint asked for is no longer kept (retention pruned it)."""


class Store(ABC):
    # Seals sensitive tenants' values (homeo.store.sealed.Cipher); the runtime
    # sets it from HOMEO_ENCRYPTION_KEY_FILE.
    cipher: Any = None
    # The free-disk floor (homeo.store.disk.DiskFloor); the runtime sets it from
    # HOMEO_MIN_FREE_DISK. None: no floor.
    disk_floor: Any = None

    # True when a read is a local call that never waits on a lock or a network
    # (SQLite in WAL mode): callers on an event loop may then read inline,
    # which is far cheaper than a thread hop. Otherwise reads go to a thread.
    inline_reads: bool = False
    # True when `write_now` may succeed: a write that would not wait for a lock
    # (SQLite, uncontended) can then run on the event loop (see `write_async`).
    inline_writes: bool = False

    def write_now(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `call` (one of this store's writes) here and now if it would not
        wait for a lock; WouldWait (nothing done) if it would."""
        raise WouldWait(f"{type(self).__name__} writes only in threads")

    # --- runs -------------------------------------------------------------
    @abstractmethod
    def create_run(self, new: NewRun, *, now: float | None = None) -> tuple[Run, bool]:
        """Insert a queued run. With an idempotency key already used by this
        tenant, return that run instead; the flag says whether one was created."""

    @abstractmethod
    def get_run(self, tenant_id: str, run_id: str) -> Run | None: ...

    @abstractmethod
    def run_status(self, tenant_id: str, run_id: str) -> str | None:
        """Only the run's status: the cheap check the engine makes between steps."""

    @abstractmethod
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
        """Newest first. `before` is a run id: page on from there."""

    @abstractmethod
    def claim_run(self, tenant_id: str, run_id: str, *, now: float | None = None) -> Run | None:
        """Start or resume the run for a new lease holder: move it from `queued`
        or `running` to `running` and raise its `lease_epoch` by one. The returned
        run's `lease_epoch` is the fencing token that this holder's writes carry;
        its `stalls` counts the claims in a row before this one that completed no
        step (a claim given back by `release_run` does not count). The first claim
        sets the run's `agent_version` to its agent's current version unless it
        has one; later claims (resumes) keep it. None when the run is missing or
        not queued or running."""

    @abstractmethod
    def release_run(
        self, tenant_id: str, run_id: str, *, fence: int, now: float | None = None
    ) -> Run | None:
        """Give a running run back to the queue (the worker is stopping) without
        counting the claim as a stall. None when the fence is stale or the run is
        no longer running."""

    @abstractmethod
    def unsettled_runs(
        self, *, updated_before: float, after_id: str = "", limit: int = 100
    ) -> list[Run]:
        """Runs of every tenant that are queued or running, untouched since
        `updated_before`, with ids above `after_id`, in id order: what the sweeper
        checks for a missing job."""

    @abstractmethod
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
        """Move the run to `status` only if its current status is in `allowed_from`
        (and, with `fence`, only if no newer claim exists). Returns the updated run,
        or None when the run is missing, in another state or claimed again."""

    @abstractmethod
    def count_runs(self, tenant_id: str | None = None) -> dict[str, int]:
        """Runs per status, for one tenant or (tenant_id=None, for metrics) all."""

    # --- SLOs (read-only counts over time windows) -------------------------
    @abstractmethod
    def run_outcomes(
        self,
        starts: Sequence[float],
        *,
        until: float,
        tenant_id: str | None = None,
        agent: str | None = None,
    ) -> list[WindowCounts]:
        """For each start, the runs that ended succeeded or failed with
        `start <= finished_at < until` (cancelled runs do not count): all, and
        the succeeded ones (`good`). Of one tenant, or (None) of every tenant."""

    @abstractmethod
    def step_speeds(
        self,
        starts: Sequence[float],
        *,
        until: float,
        within_seconds: float,
        tenant_id: str | None = None,
        kind: str | None = None,
    ) -> list[WindowCounts]:
        """For each start, the steps that succeeded with `start <= finished_at <
        until`, of one kind or all: all, and those that took at most
        `within_seconds` from `started_at` (`good`). Of one tenant or (None) all."""

    # --- steps (checkpoints) ---------------------------------------------
    @abstractmethod
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
        """Record that step `seq` is starting, before any side effect.

        If step `seq` was already begun and never finished (its process died),
        the same row is reused with `attempts` + 1, so the caller sees that the
        step was in flight before. Beginning a step that already succeeded
        raises StoreError: completed work is never redone. With `fence`, raises
        LeaseFenced when the run was claimed again since (as do `complete_step`
        and `fail_step`)."""

    @abstractmethod
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
        """In one transaction: mark the step succeeded with `output`, store the
        engine state `checkpoint` on the run, and add the token usage and cost to it.

        The step keeps `checkpoint` too, as what changed since the run's previous
        checkpoint (the whole state for the run's first completed step).
        `previous` is that earlier checkpoint, when the caller holds it: it saves
        reading it back."""

    @abstractmethod
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
        """Close a running step as `failed` or `cancelled` with `error`, adding what
        it used (tokens, cost) to the step and the run."""

    @abstractmethod
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
        """`complete_step`, and in the same transaction move the run to `waiting`
        for `wait` (a dict with at least `id` and `kind`). A wait of kind
        "children" for `wait["detail"]["runs"]` that have all ended already is no wait: the
        step is completed, the run stays `running`, and the result is False."""

    @abstractmethod
    def resume_run(
        self,
        tenant_id: str,
        run_id: str,
        *,
        wait_id: str,
        checkpoint: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> Run | None:
        """Move a run that waits for `wait_id` back to `queued`, with `checkpoint`
        (the waited-for answer written into its state) when given; add the wait to
        `waited_seconds` and count it in `wakes`. None when the run is not waiting
        for that (answered already, cancelled, or waiting for something else)."""

    @abstractmethod
    def waiting_runs(self, *, after_id: str = "", limit: int = 100) -> list[Run]:
        """Waiting runs of every tenant with ids above `after_id`, in id order:
        what the sweeper checks for passed deadlines and ended children."""

    @abstractmethod
    def child_runs(self, tenant_id: str, parent_run_id: str) -> list[Run]:
        """The runs that `parent_run_id` started, oldest first."""

    @abstractmethod
    def list_steps(self, tenant_id: str, run_id: str, *, after_seq: int = -1) -> list[Step]: ...

    @abstractmethod
    def checkpoint_at(self, tenant_id: str, run_id: str, seq: int) -> dict[str, Any] | None:
        """The checkpoint ({"seq", "next", "state"}) that step `seq` produced,
        rebuilt from the steps' deltas. None when the run has no step `seq` that
        succeeded; CheckpointPruned when retention removed it (the run's final
        state stays)."""

    @abstractmethod
    def prune_checkpoints(
        self,
        *,
        finished_before: float,
        dry_run: bool = False,
        batch: int = 500,
        now: float | None = None,
    ) -> PruneResult:
        """Remove the per-step checkpoints of every tenant's runs that finished
        before `finished_before` (their steps' outputs and final state stay), a
        transaction per `batch` runs. With `dry_run`, only count them."""

    def free_space(self, *, finished_before: float, now: float | None = None
                   ) -> tuple[PruneResult, int]:
        """For a nearly full disk: prune the checkpoints of runs finished before
        `finished_before`, as `prune_checkpoints` does, and give the room to the
        filesystem; what was pruned, and the bytes the database's files on this
        machine shrank by. A database kept by a server (PostgreSQL) gives none
        back from here: its autovacuum makes the room reusable for later rows."""
        return self.prune_checkpoints(finished_before=finished_before, now=now), 0

    @abstractmethod
    def usage(
        self, tenant_id: str, *, since: float = 0.0, agent: str | None = None
    ) -> UsageTotals:
        """Tokens (and cost) used at or after `since`: for a whole tenant, its steps
        that succeeded plus its direct model calls (`record_usage`); for `agent`,
        only the steps of that agent's runs. What tenant and agent budgets count."""

    @abstractmethod
    def record_usage(self, events: Sequence[UsageEvent]) -> None:
        """Record tokens tenants used outside any run, in one transaction."""

    # --- agents -----------------------------------------------------------
    @abstractmethod
    def put_agent(
        self,
        tenant_id: str,
        name: str,
        spec: dict[str, Any],
        *,
        author: str = "folder",
        now: float | None = None,
    ) -> AgentRecord:
        """Make `spec` the agent's definition, and keep it as a version (its
        content hash) whose parent is the version it replaces (or, for an agent
        removed before, its newest version). A definition it had before keeps
        its first version record."""

    @abstractmethod
    def get_agent_version(self, tenant_id: str, name: str, version: str) -> AgentVersion | None:
        """One version of the tenant's agent by its content hash; None if it never had it."""

    @abstractmethod
    def list_agent_versions(self, tenant_id: str, name: str) -> list[AgentVersion]:
        """Every version the agent has had (removing an agent keeps them), oldest first."""

    @abstractmethod
    def get_agent(self, tenant_id: str, name: str) -> AgentRecord | None: ...

    @abstractmethod
    def list_agents(self, tenant_id: str) -> list[AgentRecord]: ...

    @abstractmethod
    def delete_agent(self, tenant_id: str, name: str) -> bool:
        """Remove the tenant's agent; False if it had none by that name."""

    # --- evaluations --------------------------------------------------------
    @abstractmethod
    def put_eval_results(self, results: Sequence[EvalResult]) -> None:
        """Keep the scored cases of one or more evaluations, in one transaction."""

    @abstractmethod
    def list_eval_results(
        self,
        tenant_id: str,
        agent: str,
        *,
        agent_version: str | None = None,
        suite: str | None = None,
    ) -> list[EvalResult]:
        """The agent's scored cases, of one version and suite or all, oldest first."""

    # --- evolutionary searches -------------------------------------------
    @abstractmethod
    def put_evolve_generation(self, tenant_id: str, search_id: str, generation: int,
                              state: dict[str, Any], *, now: float | None = None) -> None:
        """Keep a search's state after `generation` (replacing that generation's)."""

    @abstractmethod
    def latest_evolve_generation(self, tenant_id: str,
                                 search_id: str) -> tuple[int, dict[str, Any]] | None:
        """The search's last kept generation and its state; None before the first."""

    # --- API keys ---------------------------------------------------------
    @abstractmethod
    def put_key(self, key: ApiKey) -> None:
        """Store a new key; StoreError if its id is taken."""

    @abstractmethod
    def get_key(self, key_id: str) -> ApiKey | None: ...

    @abstractmethod
    def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        """Keys oldest first, of one tenant or of all."""

    @abstractmethod
    def revoke_key(self, key_id: str, *, now: float | None = None) -> ApiKey | None:
        """Mark the key revoked (kept, for the record); None if there is no such
        key. Revoking a revoked key keeps its first revocation time."""

    # --- dashboard sessions ------------------------------------------------
    @abstractmethod
    def put_ui_session(self, session: UiSession) -> None:
        """Store a new session, and delete those that ended before it began."""

    @abstractmethod
    def get_ui_session(self, session_id: str) -> UiSession | None: ...

    @abstractmethod
    def revoke_ui_session(self, session_id: str, *, now: float | None = None) -> bool:
        """End a session at once; False if there was no live one."""

    # --- workers and the autonomic loop -------------------------------------
    @abstractmethod
    def beat_worker(self, worker: WorkerRecord) -> None:
        """Insert or refresh a worker process's heartbeat row (by its id)."""

    @abstractmethod
    def list_workers(self) -> list[WorkerRecord]:
        """Every worker row, in id order: live ones and those that stopped beating."""

    @abstractmethod
    def forget_worker(self, worker_id: str) -> bool:
        """Remove a worker's row (it stopped cleanly); False if there was none."""

    @abstractmethod
    def agent_outcomes(self, *, since: float, until: float) -> list[AgentOutcomes]:
        """For each tenant's agent with runs that ended succeeded or failed with
        `since <= finished_at < until`: how many, and how many failed. Only
        runs of its current version count (or of any, for an agent the store
        keeps no versions of): after a rollback, the version rolled back from
        no longer weighs on it."""

    @abstractmethod
    def put_signals(self, signals: Sequence[SignalRecord], *, keep_after: float) -> None:
        """Keep `signals` (one observation) and drop those older than `keep_after`."""

    @abstractmethod
    def latest_signals(self, *, since: float) -> list[SignalRecord]:
        """Each observer's newest observation made at or after `since`."""

    @abstractmethod
    def note_diagnoses(
        self, diagnoses: Sequence[DiagnosisRecord], *, now: float, keep_after: float
    ) -> list[DiagnosisRecord]:
        """Open each diagnosis, or refresh the open one of the same kind and
        subject (confidence, summary, evidence, `last_seen`); clear the open ones
        not among them; drop those cleared before `keep_after`. Returns
        the open diagnoses."""

    @abstractmethod
    def list_diagnoses(self, *, open_only: bool = False, limit: int = 50) -> list[DiagnosisRecord]:
        """Diagnoses last seen most recently first; with `open_only`, those that hold."""
    # --- shared control state and the loop's decisions ---------------------
    @abstractmethod
    def set_control(self, entry: ControlEntry) -> None:
        """Write `entry`, replacing the one under the same key."""

    @abstractmethod
    def delete_control(self, key: str) -> bool:
        """Remove the entry under `key`; whether there was one."""

    @abstractmethod
    def list_control(self, *, now: float) -> list[ControlEntry]:
        """The entries not expired at `now`, by key."""

    @abstractmethod
    def put_decision(self, decision: DecisionRecord) -> None:
        """Keep a new decision."""

    @abstractmethod
    def update_decision(
        self, decision_id: str, *, from_status: Sequence[str], now: float, **changes: Any
    ) -> DecisionRecord | None:
        """Set `changes` (status, outcome, settled_at, approved_by, error) on
        the decision if its status is one of `from_status`; the decision as it
        is then, or None when it is missing or in another status."""

    @abstractmethod
    def get_decision(self, decision_id: str) -> DecisionRecord | None: ...

    @abstractmethod
    def list_decisions(
        self, *, statuses: Sequence[str] | None = None, since: float | None = None,
        limit: int = 50,
    ) -> list[DecisionRecord]:
        """Newest first; only those in `statuses` and made at or after `since`."""

    @abstractmethod
    def count_decisions(self, *, since: float) -> int:
        """How many decisions were made at or after `since`."""

    @abstractmethod
    def decision_tally(self, kind: str) -> dict[str, tuple[int, int]]:
        """For the diagnosis `kind`: action -> (cleared, persisted) outcomes of
        the decisions that were executed."""

    # --- who submitted a run ---------------------------------------------
    @abstractmethod
    def record_submitter(self, tenant_id: str, run_id: str, principal: str) -> str:
        """Remember who submitted the run (`principal`, e.g. `key:<id>`); the
        first one recorded stays (an idempotent resubmission changes nothing).
        Returns the recorded submitter."""

    @abstractmethod
    def run_submitter(self, tenant_id: str, run_id: str) -> str | None:
        """Who submitted the run, or None when nobody was recorded."""

    # --- rate limits shared by every process on the database ---------------
    @abstractmethod
    def take_rate_tokens(
        self, buckets: Sequence[tuple[str, int, float]], *, now: float | None = None
    ) -> dict[str, float]:
        """Take one token from each bucket `(name, calls, period_seconds)`: a bucket
        holds up to `calls` tokens and gets `calls` back per `period_seconds`, and
        starts full. Either every bucket gives one or none does: returns {} when
        all did, else each short bucket's name with the seconds until it has one.
        `now` is wall-clock time, shared by every process."""

    @abstractmethod
    def rate_token_wait(
        self, bucket: str, calls: int, period_seconds: float, *, now: float | None = None
    ) -> float:
        """Seconds until `bucket` (as in `take_rate_tokens`) has a token: 0.0 when
        it has one now or was never used. Takes nothing."""

    @abstractmethod
    def forget_rate_buckets(self, prefix: str, idle_seconds: float, *,
                            now: float | None = None) -> int:
        """Delete the buckets named `prefix...` untouched for `idle_seconds` (a
        bucket idle for its whole period is full again, as a missing one
        starts): how many went."""

    # --- the audit log ----------------------------------------------------
    @abstractmethod
    def atomic(self) -> AbstractContextManager[None]:
        """Writes made inside commit together or not at all (an audit entry with
        the change it records)."""

    @abstractmethod
    def append_audit(
        self, tenant_id: str, seal: Callable[[int, str], tuple[AuditEntry, AuditHead]]
    ) -> AuditEntry:
        """Append one entry to the tenant's log: with the tenant's head locked,
        `seal(seq, prev_hash)` builds the entry that follows it (and the new
        head), signed; both are written in one transaction (joining an open
        `atomic()`). Concurrent appenders of one tenant take turns."""

    @abstractmethod
    def list_audit(
        self, tenant_id: str, *, after_seq: int = 0, limit: int | None = None,
        kind: str | None = None,
    ) -> list[AuditEntry]:
        """The tenant's entries after `after_seq`, oldest first."""

    @abstractmethod
    def audit_head(self, tenant_id: str) -> AuditHead | None: ...

    @abstractmethod
    def audit_tenants(self) -> list[str]:
        """Every tenant with a log (or a head), sorted."""

    # --- encryption at rest -----------------------------------------------
    @abstractmethod
    def tenant_encryption(self, tenant_id: str) -> TenantEncryption | None: ...

    @abstractmethod
    def set_tenant_encryption(self, setting: TenantEncryption) -> None:
        """Insert or replace the tenant's setting (joins an open `atomic()`)."""

    @abstractmethod
    def put_data_key(self, key: DataKeyRecord) -> None: ...

    @abstractmethod
    def get_data_key(self, key_id: str) -> DataKeyRecord | None: ...

    @abstractmethod
    def data_keys_not_wrapped_by(self, kek_id: str, *, limit: int = 100) -> list[DataKeyRecord]:
        """Data keys wrapped by any other key-encryption key, by id."""

    @abstractmethod
    def rewrap_data_key(self, key_id: str, from_kek: str, to_kek: str, wrapped: str) -> bool:
        """Replace the wrapping of `key_id` if it is still wrapped by `from_kek`."""

    @abstractmethod
    def data_keys_per_kek(self) -> dict[str, int]: ...

    @abstractmethod
    def sensitive_tenants(self) -> list[str]: ...

    # --- training data sets and the model registry ---------------------------
    @abstractmethod
    def put_dataset(self, dataset: DatasetRecord) -> DatasetRecord:
        """Store `dataset` as the next version of its name (1 for a new name)."""

    @abstractmethod
    def get_dataset(self, tenant_id: str, name: str,
                    version: int | None = None) -> DatasetRecord | None:
        """One version of a data set; None: its latest."""

    @abstractmethod
    def list_datasets(self, tenant_id: str) -> list[DatasetRecord]:
        """Every version of every data set of the tenant, by name then version."""

    @abstractmethod
    def put_model(self, model: ModelRecord) -> None:
        """Register a model; StoreError if its id is taken."""

    @abstractmethod
    def get_model(self, model_id: str) -> ModelRecord | None: ...

    @abstractmethod
    def list_models(self) -> list[ModelRecord]:
        """Every registered model, oldest first."""

    @abstractmethod
    def set_model_stage(self, model_id: str, stage: str, *, now: float) -> bool:
        """Move a model to `stage`; False if there is no such model."""

    @abstractmethod
    def add_alias_change(self, change: AliasChange) -> AliasChange:
        """Append to the alias's history (the store gives the next seq)."""

    @abstractmethod
    def alias_changes(self, alias: str | None = None) -> list[AliasChange]:
        """The history of one alias or of all, oldest first."""

    # --- lifecycle --------------------------------------------------------
    @abstractmethod
    def ping(self) -> None:
        """Raise if the database cannot be reached."""

    @abstractmethod
    def close(self) -> None: ...


T = TypeVar("T")


async def write_async(store: Store, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one of `store`'s writes from async code: on the event loop when it
    would not wait for a lock (a thread hop costs more than the write), else in
    a thread, so that a write waiting for the database never stalls the loop."""
    if store.inline_writes:
        with suppress(WouldWait):  # it would wait: a thread does it below
            return store.write_now(call, *args, **kwargs)
    return await asyncio.to_thread(call, *args, **kwargs)


async def read_async(store: Store, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one of `store`'s reads from async code: inline when the store says
    that is safe (it never blocks the event loop), else in a thread."""
    if store.inline_reads:
        return call(*args, **kwargs)
    return await asyncio.to_thread(call, *args, **kwargs)
