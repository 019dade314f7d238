"""Accepting and cancelling runs: what the API and the CLI share.

A run and its job (idempotency key `run:<run id>`) are written in one
transaction when the store and the queue share a database, so a crash leaves
both or neither. Where they do not, the run is stored first and its job
enqueued next; a process that dies between the two leaves a run without a job,
which the sweeper (engine/sweep.py) queues within a minute, and a client that
retries with its idempotency key gets the same run back and queues it at once.

The job's payload carries the submitter's trace context (a W3C traceparent,
see observe/tracing.py), so the worker's spans join the request's trace.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from homeo.backends import Backends
from homeo.engine import canary
from homeo.observe import tracing
from homeo.store.disk import DiskFull
from homeo.store.models import FINAL_STATUSES, AgentRecord, AgentVersion, NewRun, Run

RUN_JOB = "run"
ACTIVE_STATUSES = frozenset({"queued", "running", "waiting"})
# How often one run's job may be claimed at all: a backstop. Runs are given up
# by the worker's stall rule (`max_attempts` claims in a row that completed no step).
RUN_CLAIMS = 1000


class UnknownAgent(LookupError):
    """The run names an agent this tenant does not have."""


class SubmitFailed(Exception):
    """The run was stored but its job could not be queued; it was marked failed."""


class RunNeedsUser(Exception):
    """The agent keeps memory per user (`memory: {scope: user}`) and the run names none."""


class IdempotencyConflict(Exception):
    """The idempotency key was used before for a different request."""


class RunNotFound(LookupError):
    """No run with this id for this tenant."""


class RunAlreadyFinished(Exception):
    """The run ended already; it cannot be cancelled."""


def submit_run(
    backends: Backends,
    new: NewRun,
    *,
    max_attempts: int = 3,
    priority: int = 0,
) -> tuple[Run, bool]:
    record: AgentRecord | AgentVersion | None = backends.store.get_agent(new.tenant_id, new.agent)
    if record is None:
        known = ", ".join(a.name for a in backends.store.list_agents(new.tenant_id)) or "none"
        raise UnknownAgent(f"unknown agent {new.agent!r}; agents defined: {known}")
    if new.agent_version is None:  # a canary may send it to its challenger (engine/canary.py)
        version = canary.pick_version(backends.store, new.tenant_id, new.agent,
                                      new.idempotency_key, time.time())
        if version is not None:
            new = new.model_copy(update={"agent_version": version})
    if new.agent_version is not None:
        record = backends.store.get_agent_version(new.tenant_id, new.agent, new.agent_version)
        if record is None:
            known = ", ".join(v.version for v in backends.store.list_agent_versions(
                new.tenant_id, new.agent))
            raise UnknownAgent(f"agent {new.agent!r} has no version {new.agent_version!r};"
                               f" its versions: {known}")
    if not new.user_id and _memory_scope(record.spec) == "user":
        raise RunNeedsUser(
            f"agent {new.agent!r} keeps memory per user (`memory: {{scope: user}}`): name the"
            " user the run is for (`user` in POST /v1/runs, `homeo run --user NAME`, or sign"
            " in as that user)")
    payload: dict[str, Any] = {}
    if carrier := tracing.current_carrier():
        payload[tracing.PAYLOAD_KEY] = carrier
    if backends.shared is not None:  # one transaction: both or neither are stored
        try:
            with backends.atomic():
                run, created = _create(backends, new)
                enqueue_run(backends, run, payload, max_attempts=max_attempts,
                            priority=priority)
        except (IdempotencyConflict, UnknownAgent, RunNeedsUser, DiskFull):
            raise
        except Exception as error:
            raise SubmitFailed(f"the run could not be queued ({_first_line(error)});"
                               " nothing was stored; try again") from error
        return run, created
    run, created = _create(backends, new)
    try:
        enqueue_run(backends, run, payload, max_attempts=max_attempts, priority=priority)
    except Exception as error:
        # The run was stored alone, and the caller is told it failed: end it
        # visibly (best effort: the store may be what failed, and then the
        # sweeper queues it, so it is never stranded).
        with contextlib.suppress(Exception):
            backends.store.transition_run(
                run.tenant_id, run.id, "failed", allowed_from={"queued"},
                error=f"could not be queued: {error}",
            )
        raise SubmitFailed(
            f"run {run.id} could not be queued ({_first_line(error)}); try again") from error
    return run, created


def _memory_scope(spec: dict[str, Any]) -> str | None:
    """The scope of the agent's memory, read from its stored definition (a
    definition that does not parse is the worker's to report, not submission's)."""
    memory = spec.get("memory")
    return memory.get("scope") if isinstance(memory, dict) else None


def _create(backends: Backends, new: NewRun) -> tuple[Run, bool]:
    run, created = backends.store.create_run(new)
    asked = (new.agent, new.input, new.forked_from_run, new.forked_from_step, new.user_id)
    if not created and (run.agent, run.input, run.forked_from_run, run.forked_from_step,
                        run.user_id) != asked:
        differs = ("agent" if run.agent != new.agent else "input" if run.input != new.input
                   else "user" if run.user_id != new.user_id else "fork origin")
        raise IdempotencyConflict(
            f"idempotency key {new.idempotency_key!r} was already used for run {run.id}"
            f" with a different {differs}; send the same request to get that run back,"
            " or use a new key for a new run"
        )
    return run, created


def run_job_key(run: Run) -> str:
    """The idempotency key of the job that executes `run` now: `run:<id>` at
    first, and a new one after each wake from waiting (engine/waits.py), since
    the earlier job has ended."""
    return f"run:{run.id}" if run.wakes == 0 else f"run:{run.id}:wake:{run.wakes}"


def enqueue_run(
    backends: Backends,
    run: Run,
    payload: dict[str, Any] | None = None,
    *,
    max_attempts: int = 3,
    priority: int = 0,
) -> None:
    """Queue the job that executes `run` (a no-op when it is queued already).

    `max_attempts` is how many claims in a row may end without completing a
    step before the run is given up (the worker's rule); the job itself may be
    claimed up to `RUN_CLAIMS` times, a backstop for runs that never end."""
    backends.queue.enqueue(
        run.tenant_id,
        RUN_JOB,
        {**(payload or {}), "run_id": run.id, "max_attempts": max_attempts},
        idempotency_key=run_job_key(run),
        max_attempts=RUN_CLAIMS,
        priority=priority,
    )


def cancel_run(backends: Backends, tenant_id: str, run_id: str) -> Run:
    """Cancel a queued, running or waiting run, and the runs it started that have
    not ended. A running run stops its step in flight."""
    cancelled = backends.store.transition_run(
        tenant_id, run_id, "cancelled", allowed_from=ACTIVE_STATUSES
    )
    if cancelled is not None:
        _cancel_children(backends, cancelled)
        if cancelled.parent_run_id is not None:  # the parent may be waiting for it
            from homeo.engine.waits import wake_parent  # waits queues runs through here

            wake_parent(backends, cancelled)
        return cancelled
    run = backends.store.get_run(tenant_id, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    if run.status in FINAL_STATUSES:
        raise RunAlreadyFinished(f"run {run_id} already {run.status}; nothing to cancel")
    raise RunAlreadyFinished(f"run {run_id} is {run.status} and cannot be cancelled")


def _cancel_children(backends: Backends, parent: Run) -> None:
    pending = [parent]
    while pending:  # depth first over the tree of runs; each run is cancelled once
        run = pending.pop()
        for child in backends.store.child_runs(run.tenant_id, run.id):
            cancelled = backends.store.transition_run(
                child.tenant_id, child.id, "cancelled", allowed_from=ACTIVE_STATUSES,
                error=f"its parent run {parent.id} was cancelled")
            if cancelled is not None:
                pending.append(cancelled)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
