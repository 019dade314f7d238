"""Accepting and cancelling runs: what the API and the CLI share.

A run is created in the store first, then its job is enqueued under the
idempotency key `run:<run id>`. If the process dies between the two, the
client got no answer; when it retries with its idempotency key it gets the
same run back and the missing job is enqueued then. Once the client has its
answer, both are stored.

The job's payload carries the submitter's trace context (a W3C traceparent,
see observe/tracing.py), so the worker's spans join the request's trace.
"""

from __future__ import annotations

import contextlib
from typing import Any

from homeo.backends import Backends
from homeo.engine.worker import RUN_JOB
from homeo.observe import tracing
from homeo.store.models import FINAL_STATUSES, NewRun, Run


class UnknownAgent(LookupError):
    """The run names an agent this tenant does not have."""


class SubmitFailed(Exception):
    """The run was stored but its job could not be queued; it was marked failed."""


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
    if backends.store.get_agent(new.tenant_id, new.agent) is None:
        known = ", ".join(a.name for a in backends.store.list_agents(new.tenant_id)) or "none"
        raise UnknownAgent(f"unknown agent {new.agent!r}; agents defined: {known}")
    run, created = backends.store.create_run(new)
    payload: dict[str, Any] = {"run_id": run.id}
    if carrier := tracing.current_carrier():
        payload[tracing.PAYLOAD_KEY] = carrier
    try:
        backends.queue.enqueue(
            run.tenant_id,
            RUN_JOB,
            payload,
            idempotency_key=f"run:{run.id}",
            max_attempts=max_attempts,
            priority=priority,
        )
    except Exception as error:
        # Without a job the run would wait forever: end it visibly (best effort;
        # the store may be what failed), and tell the caller to try again.
        with contextlib.suppress(Exception):
            backends.store.transition_run(
                run.tenant_id, run.id, "failed", allowed_from={"queued"},
                error=f"could not be queued: {error}",
            )
        raise SubmitFailed(f"run {run.id} could not be queued ({error}); try again") from error
    return run, created


def cancel_run(backends: Backends, tenant_id: str, run_id: str) -> Run:
    """Cancel a queued, running or waiting run. A running run stops before its next step."""
    cancelled = backends.store.transition_run(
        tenant_id, run_id, "cancelled", allowed_from={"queued", "running", "waiting"}
    )
    if cancelled is not None:
        return cancelled
    run = backends.store.get_run(tenant_id, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    if run.status in FINAL_STATUSES:
        raise RunAlreadyFinished(f"run {run_id} already {run.status}; nothing to cancel")
    raise RunAlreadyFinished(f"run {run_id} is {run.status} and cannot be cancelled")
