"""The dashboard's run pages: the list (filter by status and agent, newest
first, a page at a time), a run with its steps as a timeline and waterfall,
updated live over server-sent events while it runs (static/live.js), a step
with its input, output and the run's state after it; and approve, reject,
cancel and fork where the caller's role allows, through the same functions as
the API's routes (homeo.api.run_actions)."""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from homeo.api.deps import SESSION_COOKIE, AppParts, parts, read, requires, session_caller
from homeo.api import run_actions
from homeo.api.runs import RUN_ID, _load, event_stream
from homeo.api.schemas import MAX_ROW_NUMBER, RunDetail, RunView, StepView
from homeo.api.ui.render import UI_PATH, csrf_token, page
from homeo.engine.history import StepNotFound, step_state
from homeo.keys import Caller
from homeo.store.base import CheckpointPruned
from homeo.store.models import FINAL_STATUSES, RUN_STATUSES, role_allows

router = APIRouter(prefix=f"{UI_PATH}/runs", include_in_schema=False)
Parts = Annotated[AppParts, Depends(parts)]
PAGE_SIZE = 25
MAX_COMMENT_CHARS = 4000


async def form_is_ours(request: Request, _: Annotated[Caller, Depends(session_caller)],
                       csrf: Annotated[str, Form(max_length=128)] = "") -> None:
    """A form signed in by cookie must carry its session's CSRF token; a
    request with an Authorization header carries no ambient credential.
    The caller is checked first: without one, a 401 says to sign in."""
    if request.headers.get("authorization"):
        return
    session = request.cookies.get(SESSION_COOKIE, "")
    if not (session and hmac.compare_digest(csrf.encode(), csrf_token(session).encode())):
        raise HTTPException(403, "this form's CSRF token is missing or stale:"
                                 " reload the page and submit it again")


@router.get("")
async def runs_page(
    request: Request,
    app: Parts,
    found: Annotated[Caller, requires("viewer", session=True)],
    status: Annotated[str, Query(max_length=16)] = "",
    agent: Annotated[str, Query(max_length=64)] = "",
    before: Annotated[str, Query(max_length=32)] = "",
) -> HTMLResponse:
    if status and status not in RUN_STATUSES:
        raise HTTPException(422, f"status {status!r} is not one of {', '.join(RUN_STATUSES)}")
    if before and not _is_run_id(before):
        raise HTTPException(422, f"before {before!r} is not a run id (run_ followed by 22 hex)")
    listed = await read(app, app.backends.store.list_runs, found.tenant_id,
                        status=status or None, agent=agent.strip() or None, limit=PAGE_SIZE,
                        before=before or None)
    older = listed[-1].id if len(listed) == PAGE_SIZE else None
    return page(request, "runs.html", who=found, runs=[RunView.of(run) for run in listed], statuses=RUN_STATUSES,
                status=status, agent=agent, before=before, older=older)


@router.get("/{run_id}")
async def run_page(run_id: str, request: Request, app: Parts,
                   found: Annotated[Caller, requires("viewer", session=True)]) -> HTMLResponse:
    detail: RunDetail = await read(app, _load, app, found.tenant_id, run_id)
    waiting_for = detail.waiting_for or {}
    return page(request, "run.html", who=found, run=detail, bars=timeline(detail.steps),
                shown=shown, live=detail.status not in FINAL_STATUSES,
                can_answer=(detail.status == "waiting" and waiting_for.get("kind") == "approval"
                            and role_allows(found.role, "operator")),
                can_cancel=(detail.status not in FINAL_STATUSES
                            and await _may_cancel(app, found, run_id)))


async def _may_cancel(app: AppParts, found: Caller, run_id: str) -> bool:
    return await read(app, run_actions.may_cancel, app, found, found.tenant_id, run_id)


@router.get("/{run_id}/events")
async def run_events(run_id: str, request: Request, app: Parts,
                     found: Annotated[Caller, requires("viewer", session=True)]
                     ) -> StreamingResponse:
    """The events of GET /v1/runs/{id}/events, for the run page's live updates."""
    await read(app, _load, app, found.tenant_id, run_id)  # 404 before the stream starts
    return StreamingResponse(event_stream(app, found.tenant_id, run_id, request),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{run_id}/steps/{seq}")
async def step_page(run_id: str, seq: Annotated[int, Path(ge=0, le=MAX_ROW_NUMBER)],
                    request: Request, app: Parts,
                    found: Annotated[Caller, requires("viewer", session=True)]) -> HTMLResponse:
    pruned = None
    try:
        step, checkpoint = await read(app, step_state, app.backends.store, found.tenant_id,
                                      run_id, seq)
    except StepNotFound as error:
        raise HTTPException(404, str(error)) from None
    except CheckpointPruned as error:
        pruned = str(error)
        step, checkpoint = await read(app, _step_only, app, found.tenant_id, run_id, seq), None
    return page(request, "step.html", who=found, run_id=run_id, step=StepView.of(step),
                checkpoint=checkpoint, pruned=pruned, shown=shown,
                can_fork=(checkpoint is not None and checkpoint.get("next") is not None
                          and role_allows(found.role, "member")))


@router.post("/{run_id}/approve", dependencies=[Depends(form_is_ours)])
async def approve(run_id: str, request: Request, app: Parts,
                  found: Annotated[Caller, requires("operator", session=True)],
                  comment: Annotated[str, Form(max_length=MAX_COMMENT_CHARS)] = ""
                  ) -> RedirectResponse:
    await asyncio.to_thread(run_actions.approve, app, request.app.state.audit,
                            found.tenant_id, run_id, found, comment)
    return _back_to(run_id)


@router.post("/{run_id}/reject", dependencies=[Depends(form_is_ours)])
async def reject(run_id: str, request: Request, app: Parts,
                 found: Annotated[Caller, requires("operator", session=True)],
                 comment: Annotated[str, Form(max_length=MAX_COMMENT_CHARS)] = ""
                 ) -> RedirectResponse:
    await asyncio.to_thread(run_actions.reject, app, request.app.state.audit,
                            found.tenant_id, run_id, found, comment)
    return _back_to(run_id)


@router.post("/{run_id}/cancel", dependencies=[Depends(form_is_ours)])
async def cancel(run_id: str, request: Request, app: Parts,
                 found: Annotated[Caller, requires("member", session=True)]
                 ) -> RedirectResponse:
    """As POST /v1/runs/{id}/cancel: a member cancels only the runs it submitted."""
    await asyncio.to_thread(run_actions.cancel, app, request.app.state.audit,
                            found.tenant_id, run_id, found)
    return _back_to(run_id)


@router.post("/{run_id}/steps/{seq}/fork", dependencies=[Depends(form_is_ours)])
async def fork(run_id: str, seq: Annotated[int, Path(ge=0, le=MAX_ROW_NUMBER)],
               request: Request, app: Parts,
               found: Annotated[Caller, requires("member", session=True)]) -> RedirectResponse:
    """As POST /v1/runs/{id}/fork from this step, without edits: the new run's page."""
    run, _ = await asyncio.to_thread(run_actions.fork, app, found.tenant_id, run_id, seq,
                                     found, request_id=request.state.request_id)
    return _back_to(run.id)


def timeline(steps: list[StepView]) -> list[dict[str, float]]:
    """Each step's bar in the run's waterfall: where it starts and how long it
    lasts, in percent of the time from the first step's start to the last's end."""
    timed = [s for s in steps if s.started_at is not None]
    if not timed:
        return []
    begin = min(s.started_at.timestamp() for s in timed)  # type: ignore[union-attr]
    ends = [s.started_at.timestamp() + (s.duration_ms or 0) / 1000  # type: ignore[union-attr]
            for s in timed]
    span = max(max(ends) - begin, 1e-6)
    bars = []
    for step in steps:
        if step.started_at is None:
            bars.append({"seq": step.seq, "left": 0.0, "width": 0.0})
            continue
        left = (step.started_at.timestamp() - begin) / span * 100
        width = max((step.duration_ms or 0) / 1000 / span * 100, 0.5)
        bars.append({"seq": step.seq, "left": round(left, 2),
                     "width": round(min(width, 100 - left), 2)})
    return bars


def shown(value: Any) -> str:
    """A step's input, output or state as readable text: strings as they are,
    anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _step_only(app: AppParts, tenant_id: str, run_id: str, seq: int) -> Any:
    steps = [s for s in app.backends.store.list_steps(tenant_id, run_id) if s.seq == seq]
    if not steps:
        raise StepNotFound(f"run {run_id} has no step {seq}")
    return steps[0]


def _is_run_id(text: str) -> bool:
    return re.fullmatch(RUN_ID, text) is not None


def _back_to(run_id: str) -> RedirectResponse:
    return RedirectResponse(f"{UI_PATH}/runs/{run_id}", status_code=303)
