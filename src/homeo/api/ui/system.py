"""The dashboard's system page: each provider deployment and its circuit
breaker (as GET /v1/providers), this tenant's share of the queue, and, for
admins, the whole queue's depth and ages and the worker processes with their
slots (what the autonomic loop watches)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from homeo.api.deps import AppParts, parts, read, requires
from homeo.api.ui.render import UI_PATH, page
from homeo.keys import Caller
from homeo.store.models import role_allows

router = APIRouter(prefix=f"{UI_PATH}/system", include_in_schema=False)


@router.get("")
async def system_page(request: Request, app: Annotated[AppParts, Depends(parts)],
                      found: Annotated[Caller, requires("viewer", session=True)]
                      ) -> HTMLResponse:
    now = request.app.state.wall_clock()
    backlog = await read(app, app.backends.queue.backlog, now)
    admin = role_allows(found.role, "admin")
    workers = await read(app, app.backends.store.list_workers) if admin else []
    stale = app.settings.worker_stale_seconds
    return page(request, "system.html", who=found, providers=providers(request),
                mine=backlog.due_by_tenant.get(found.tenant_id, 0), admin=admin,
                backlog=backlog, now=now,
                workers=[{**w.model_dump(), "live": now - w.last_seen < stale,
                          "leases": backlog.leases_by_worker.get(w.id, 0)} for w in workers])


def providers(request: Request) -> list[dict[str, Any]]:
    listed = []
    for entry, breaker, aliases in request.app.state.models.deployments():
        calls, failures = breaker.window()
        listed.append({"name": entry.key, "model": entry.model, "aliases": aliases,
                       "state": breaker.state, "calls": calls, "failures": failures,
                       "error_rate": failures / calls if calls else None,
                       "retry_in": breaker.retry_in()})
    return listed
