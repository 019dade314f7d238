"""The dashboard's agent pages: the agents the caller's tenant runs, and each
agent's versions with their KPIs and 95% intervals (homeo.evolve.kpis), as
GET /v1/agents and /v1/agents/{name}/versions answer them, and its stored
evaluations (`homeo eval run`) with each case's run, its champion/challenger
canary (homeo.engine.canary) and a link to the candidates `homeo evolve`
kept for it (the NAME-evolve shadow agent's versions)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from homeo.api.deps import AppParts, parts, read, requires
from homeo.api.ui.render import UI_PATH, page
from homeo.engine import canary
from homeo.evolve.candidates import shadow_name
from homeo.evolve.evals import evaluations
from homeo.evolve.kpis import version_kpis
from homeo.keys import Caller

router = APIRouter(prefix=f"{UI_PATH}/agents", include_in_schema=False)
Parts = Annotated[AppParts, Depends(parts)]


@router.get("")
async def agents_page(request: Request, app: Parts,
                      found: Annotated[Caller, requires("viewer", session=True)]
                      ) -> HTMLResponse:
    records = await read(app, app.backends.store.list_agents, found.tenant_id)
    return page(request, "agents.html", who=found, agents=records)


@router.get("/{name}")
async def agent_page(name: str, request: Request, app: Parts,
                     found: Annotated[Caller, requires("viewer", session=True)]
                     ) -> HTMLResponse:
    versions = await read(app, version_kpis, app.backends.store, found.tenant_id, name)
    if not versions:
        raise HTTPException(404, f"agent {name!r} has no versions for this tenant;"
                                 f" {UI_PATH}/agents lists the agents it has")
    store = app.backends.store
    evaluated = await read(app, evaluations, store, found.tenant_id, name)
    trial = await read(app, canary.get, store, found.tenant_id, name, time.time())
    shadow = shadow_name(name)
    evolved = await read(app, store.list_agent_versions, found.tenant_id, shadow)
    return page(request, "agent.html", who=found, name=name, versions=versions[::-1],
                evaluations=evaluated, canary=trial, shadow=shadow if evolved else None,
                candidates=len(evolved))
