"""/v1/runs: submit, read, list, cancel, and follow runs; answer a waiting run
(approve or reject a tool call, give the input it asked for)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from homeo.api import run_actions
from homeo.api.deps import AppParts, caller, parts, read, requires, tenant
from homeo.api.errors import error_response
from homeo.api.safety import note_screening
from homeo.api.schemas import (
    MAX_ROW_NUMBER,
    Approval,
    ChildView,
    ForkRequest,
    PersonInput,
    Rejection,
    RunAccepted,
    RunDetail,
    RunPage,
    RunRequest,
    RunView,
    StepStateView,
    StepView,
)
from homeo.audit import AuditLog, Event
from homeo.engine.agents import AgentSpec
from homeo.engine.history import StepNotFound, step_state
from homeo.engine.submit import RunNotFound, submit_run
from homeo.keys import Caller
from homeo.safety.guards import GuardUnavailable
from homeo.safety.screen import SafetyGuards
from homeo.store.base import CheckpointPruned
from homeo.store.models import NewRun, Run, RunStatus

router = APIRouter(prefix="/v1/runs", tags=["runs"])

Parts = Annotated[AppParts, Depends(parts)]
Tenant = Annotated[str, Depends(tenant)]
Found = Annotated[Caller, Depends(caller)]
RUN_ID = r"^run_[0-9a-f]{22}$"
EVENT_POLL_SECONDS = 0.2
EVENT_KEEPALIVE_SECONDS = 15.0


@router.post(
    "",
    status_code=202,
    response_model=RunAccepted,
    responses={200: {"description": "A run with this idempotency key already exists."},
               422: {"description": "The safety policy blocks the input (the verdicts in"
                                    " `error.details`)."}},
    dependencies=[requires("member")],
)
async def create_run(
    body: RunRequest, request: Request, response: Response, app: Parts, tenant_id: Tenant,
    found: Found,
) -> RunAccepted | JSONResponse:
    limit = app.settings.max_input_chars
    if len(body.input) > limit:
        raise HTTPException(413, f"input is {len(body.input)} characters; the limit is {limit}")
    await asyncio.to_thread(_not_shed, app, tenant_id)
    refused = await _refused_input(request, app, tenant_id, found.principal, body)
    if refused is not None:
        return refused
    new = NewRun(
        tenant_id=tenant_id,
        agent=body.agent,
        input=body.input,
        idempotency_key=body.idempotency_key,
        request_id=request.state.request_id,
        user_id=_run_user(body, found),
    )
    run, created = await asyncio.to_thread(_submit, app, new, found, request.app.state.audit)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return RunAccepted(id=run.id, status=run.status)


def _not_shed(app: AppParts, tenant_id: str) -> None:
    """429 with Retry-After while the autonomic loop sheds the tenant's load
    (it found the tenant flooding the queue)."""
    wait = None if app.control is None else app.control.shed_retry_after(tenant_id)
    if wait is not None:
        raise HTTPException(
            429, f"tenant {tenant_id} is submitting more runs than homeo can take now; the"
                 f" autonomic loop is shedding its load: retry in {wait:.0f}s",
            headers={"Retry-After": str(math.ceil(wait))})


def _run_user(body: RunRequest, found: Caller) -> str | None:
    """Whom the run works for: the body's `user`, else a JWT caller's subject.
    A signed-in user may name only itself (an admin anyone), so no token reaches
    another person's memory; an API key speaks for a service, which names its user."""
    if found.user and body.user is not None and body.user != found.user and not found.is_admin:
        raise HTTPException(403, f"you are signed in as {found.user!r} and may submit runs"
                                 f" only for yourself, not for user {body.user!r}: leave out"
                                 " `user`, or use an admin token or an API key")
    return body.user if body.user is not None else (found.user or None)


async def _refused_input(
    request: Request, app: AppParts, tenant_id: str, principal: str, body: RunRequest
) -> JSONResponse | None:
    """A 422 carrying the verdicts when the safety policy of the tenant and agent
    blocks the input; its other input rules (redact, flag) apply when the run starts."""
    guards: SafetyGuards = request.app.state.safety
    record = await read(app, app.backends.store.get_agent, tenant_id, body.agent)
    if record is None:
        return None  # submit_run says the agent is unknown
    try:
        agent = AgentSpec.model_validate(record.spec).safety
    except ValueError:
        return None  # the worker fails the run, saying what is wrong with the definition
    policy = guards.policy(tenant_id, agent)
    if not any(rule.action == "block" for rule in policy.rules("input").values()):
        return None
    try:
        screening = await asyncio.to_thread(guards.check, policy, "input", body.input,
                                            only=("block",))
    except GuardUnavailable as error:
        return error_response(request, 503, f"the safety policy needs a guard that cannot"
                                            f" run: {error}")
    if screening.action != "block":
        return None
    record_json = screening.to_json()
    await note_screening(request, tenant_id, principal, f"agent:{body.agent}", record_json)
    return error_response(
        request, 422, f"the input was refused by the safety policy: {screening.reason};"
                      " remove what it names and submit again", details=[record_json],
        kind="input_blocked")


@router.get("", response_model=RunPage, dependencies=[requires("viewer")])
async def list_runs(
    app: Parts,
    tenant_id: Tenant,
    status: RunStatus | None = None,
    agent: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[str | None, Query(pattern=RUN_ID)] = None,
) -> RunPage:
    runs = await read(
        app,
        app.backends.store.list_runs,
        tenant_id, status=status, agent=agent, limit=limit, before=before,
    )
    next_before = runs[-1].id if len(runs) == limit else None
    return RunPage(runs=[RunView.of(run) for run in runs], next_before=next_before)


def _load(app: AppParts, tenant_id: str, run_id: str) -> RunDetail:
    run = app.backends.store.get_run(tenant_id, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    steps = app.backends.store.list_steps(tenant_id, run_id)
    children = app.backends.store.child_runs(tenant_id, run_id)
    return RunDetail(**RunView.of(run).model_dump(), steps=[StepView.of(s) for s in steps],
                     children=[ChildView(id=c.id, agent=c.agent, status=c.status)
                               for c in children])


@router.get("/{run_id}", response_model=RunDetail, dependencies=[requires("viewer")])
async def get_run(run_id: str, app: Parts, tenant_id: Tenant) -> RunDetail:
    return await read(app, _load, app, tenant_id, run_id)


@router.get("/{run_id}/steps/{seq}", response_model=StepStateView,
            responses={410: {"description": "Retention pruned this step's checkpoint."}},
            dependencies=[requires("viewer")])
async def get_step(run_id: str, seq: Annotated[int, Path(ge=0, le=MAX_ROW_NUMBER)], app: Parts,
                   tenant_id: Tenant) -> StepStateView:
    """One step and the run's state after it (rebuilt from the steps' checkpoints)."""
    try:
        step, checkpoint = await read(app, step_state, app.backends.store, tenant_id, run_id,
                                      seq)
    except StepNotFound as error:
        raise HTTPException(404, str(error)) from None
    except CheckpointPruned as error:
        raise HTTPException(410, str(error)) from None
    return StepStateView(
        run_id=run_id, step=StepView.of(step),
        next=None if checkpoint is None else checkpoint["next"],
        state=None if checkpoint is None else checkpoint["state"],
    )


@router.post(
    "/{run_id}/fork",
    status_code=202,
    response_model=RunView,
    responses={200: {"description": "A run with this idempotency key already exists."},
               409: {"description": "The step did not succeed, or nothing follows it."},
               410: {"description": "Retention pruned this step's checkpoint."}},
    dependencies=[requires("member")],
)
async def fork(
    run_id: str, body: ForkRequest, request: Request, response: Response, app: Parts,
    tenant_id: Tenant, found: Found,
) -> RunView:
    """Start a new run from the state after step `from_step` (with edits): the
    steps up to it are not run again."""
    run, created = await asyncio.to_thread(
        run_actions.fork, app, tenant_id, run_id, body.from_step, found, edits=body.state,
        idempotency_key=body.idempotency_key, request_id=request.state.request_id)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return RunView.of(run)


@router.post("/{run_id}/cancel", response_model=RunView, dependencies=[requires("member")])
async def cancel(run_id: str, request: Request, app: Parts, tenant_id: Tenant,
                 found: Found) -> RunView:
    """A member cancels the runs it submitted; an operator or admin any run of the tenant."""
    return RunView.of(await asyncio.to_thread(run_actions.cancel, app, request.app.state.audit,
                                              tenant_id, run_id, found))


def _submit(app: AppParts, new: NewRun, found: Caller, audit: AuditLog | None
            ) -> tuple[Run, bool]:
    """Submit the run, remember who did (a member may cancel only its own), and
    record it in the audit log, in one transaction when the store and queue
    share a database."""
    with app.backends.atomic():
        run, created = submit_run(app.backends, new, max_attempts=app.settings.max_attempts)
        app.backends.store.record_submitter(new.tenant_id, run.id, found.principal)
        if created and audit is not None:
            audit.record(new.tenant_id, Event("run.submitted", found.principal, f"run:{run.id}",
                                              {"agent": new.agent}))
    return run, created


@router.post("/{run_id}/approve", response_model=RunView, dependencies=[requires("operator")])
async def approve(run_id: str, body: Approval, request: Request, app: Parts, tenant_id: Tenant,
                  found: Found) -> RunView:
    """Approve the tool call a waiting run asks about (with `arguments`: run it
    with those instead); the run is queued again."""
    return RunView.of(await asyncio.to_thread(
        run_actions.approve, app, request.app.state.audit, tenant_id, run_id, found,
        body.comment, body.arguments))


@router.post("/{run_id}/reject", response_model=RunView, dependencies=[requires("operator")])
async def reject(run_id: str, body: Rejection, request: Request, app: Parts, tenant_id: Tenant,
                 found: Found) -> RunView:
    """Refuse the tool call a waiting run asks about; the model is told, with the comment."""
    return RunView.of(await asyncio.to_thread(
        run_actions.reject, app, request.app.state.audit, tenant_id, run_id, found,
        body.comment))


@router.post("/{run_id}/input", response_model=RunView, dependencies=[requires("operator")])
async def give_input(run_id: str, body: PersonInput, request: Request, app: Parts,
                     tenant_id: Tenant, found: Found) -> RunView:
    """Answer the question a waiting run asked; the run is queued again."""
    return RunView.of(await asyncio.to_thread(
        run_actions.answer, app, request.app.state.audit, tenant_id, run_id, "input",
        {"answer": body.answer}, found, "run.answered"))


@router.get(
    "/{run_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    dependencies=[requires("viewer")],
)
async def events(run_id: str, request: Request, app: Parts, tenant_id: Tenant) -> StreamingResponse:
    """Server-sent events: `step` when a step starts or changes, `run` when the
    run's status changes, `waiting` with what the run waits for when it starts
    waiting, and a last `end` event once the run is final."""
    await read(app, _load, app, tenant_id, run_id)  # 404 before the stream starts
    return StreamingResponse(
        event_stream(app, tenant_id, run_id, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


async def event_stream(
    app: AppParts, tenant_id: str, run_id: str, request: Request
) -> AsyncIterator[str]:
    seen_steps: dict[int, tuple[str, int]] = {}
    seen_status = None
    quiet = 0.0
    while True:
        detail = await read(app, _load, app, tenant_id, run_id)
        sent = False
        for step in detail.steps:
            marker = (step.status, step.attempts)
            if seen_steps.get(step.seq) != marker:
                seen_steps[step.seq] = marker
                yield _sse("step", step.model_dump(mode="json"))
                sent = True
        if detail.status != seen_status:
            seen_status = detail.status
            yield _sse("run", RunView.model_validate(detail.model_dump()).model_dump(mode="json"))
            if detail.status == "waiting":
                yield _sse("waiting", {"id": run_id, "waiting_for": detail.waiting_for})
            sent = True
        if detail.status in ("succeeded", "failed", "cancelled"):
            yield _sse("end", {"id": run_id, "status": detail.status})
            return
        quiet = 0.0 if sent else quiet + EVENT_POLL_SECONDS
        if quiet >= EVENT_KEEPALIVE_SECONDS:
            quiet = 0.0
            yield ": keep-alive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(EVENT_POLL_SECONDS)
