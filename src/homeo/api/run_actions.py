"""What a person does to a run: cancel it, answer what it waits for (approve,
reject, give input), fork it from a step. One function each, with its checks
and its audit entry, shared by the JSON API (homeo.api.runs) and the
dashboard's forms (homeo.api.ui.runs), so both decide alike. Each is sync:
callers run it in a thread. Refusals are HTTPExceptions with what to do next."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from homeo.api.deps import AppParts
from homeo.audit import AuditLog, Event
from homeo.engine import waits
from homeo.engine.history import InvalidStateEdit, NotForkable, StepNotFound, fork_run
from homeo.engine.submit import RunNotFound, cancel_run
from homeo.keys import Caller
from homeo.store.base import CheckpointPruned
from homeo.store.models import Run, role_allows


def may_cancel(app: AppParts, found: Caller, tenant_id: str, run_id: str) -> bool:
    """An operator cancels any run of its tenant; a member only those it submitted."""
    if role_allows(found.role, "operator"):
        return True
    return (role_allows(found.role, "member")
            and app.backends.store.run_submitter(tenant_id, run_id) == found.principal)


def cancel(app: AppParts, audit: AuditLog | None, tenant_id: str, run_id: str,
           found: Caller) -> Run:
    """Cancel the run (a running one stops before its next step)."""
    if not role_allows(found.role, "operator"):
        _check_submitter(app, tenant_id, run_id, found, audit)
    with app.backends.atomic():
        run = cancel_run(app.backends, tenant_id, run_id)
        if audit is not None:
            audit.record(tenant_id, Event("run.cancelled", found.principal, f"run:{run_id}"))
    return run


def answer(app: AppParts, audit: AuditLog | None, tenant_id: str, run_id: str,
           kind: waits.WaitKind, decision: dict[str, Any], found: Caller, event: str) -> Run:
    """Answer what a waiting run waits for; it is queued again. The audit entry
    commits with the answer."""
    run = app.backends.store.get_run(tenant_id, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    with app.backends.atomic():
        answered = waits.answer(app.backends, run, kind, decision,
                                max_attempts=app.settings.max_attempts)
        if audit is not None:
            audit.record(tenant_id, Event(event, found.principal, f"run:{run_id}",
                                          {"comment": decision.get("comment", "")}
                                          if kind == "approval" else {}))
    return answered


def approve(app: AppParts, audit: AuditLog | None, tenant_id: str, run_id: str, found: Caller,
            comment: str = "", arguments: dict[str, Any] | None = None) -> Run:
    return answer(app, audit, tenant_id, run_id, "approval",
                  {"approved": True, "comment": comment, "arguments": arguments}, found,
                  "run.approved")


def reject(app: AppParts, audit: AuditLog | None, tenant_id: str, run_id: str, found: Caller,
           comment: str = "") -> Run:
    return answer(app, audit, tenant_id, run_id, "approval",
                  {"approved": False, "comment": comment}, found, "run.rejected")


def fork(app: AppParts, tenant_id: str, run_id: str, from_step: int, found: Caller, *,
         edits: Any = None, idempotency_key: str | None = None,
         request_id: str | None = None) -> tuple[Run, bool]:
    """A new run from the state after step `from_step` (with `edits`): the steps
    up to it are not run again. The forker is its submitter, so a member may
    cancel the forks it made. Returns the run and whether it is new."""
    try:
        run, created = fork_run(app.backends, tenant_id, run_id, from_step, edits=edits,
                                idempotency_key=idempotency_key, request_id=request_id,
                                max_attempts=app.settings.max_attempts)
    except StepNotFound as error:
        raise HTTPException(404, str(error)) from None
    except NotForkable as error:
        raise HTTPException(409, str(error)) from None
    except CheckpointPruned as error:
        raise HTTPException(410, str(error)) from None
    except InvalidStateEdit as error:
        raise HTTPException(422, str(error)) from None
    app.backends.store.record_submitter(tenant_id, run.id, found.principal)
    return run, created


def _check_submitter(app: AppParts, tenant_id: str, run_id: str, found: Caller,
                     audit: AuditLog | None) -> None:
    store = app.backends.store
    if store.run_status(tenant_id, run_id) is None:
        raise RunNotFound(f"no run {run_id!r}")
    if store.run_submitter(tenant_id, run_id) != found.principal:
        if audit is not None:
            audit.record(tenant_id, Event("access.denied", found.principal,
                                          f"POST /v1/runs/{run_id}/cancel",
                                          {"role": found.role, "reason": "not its run"}))
        raise HTTPException(
            403, f"{found} has role {found.role}, which cancels only the runs it submitted;"
            " cancelling any run of the tenant needs operator or above")
