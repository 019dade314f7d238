"""The dashboard's SLO page: each SLO's value, error budget left and burn
rates for the caller's tenant, measured as GET /v1/slo measures them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from homeo.api.deps import AppParts, parts, read, requires
from homeo.api.ui.render import UI_PATH, page
from homeo.keys import Caller
from homeo.observe.slo.measure import measure

router = APIRouter(prefix=f"{UI_PATH}/slo", include_in_schema=False)


@router.get("")
async def slo_page(request: Request, app: Annotated[AppParts, Depends(parts)],
                   found: Annotated[Caller, requires("viewer", session=True)]) -> HTMLResponse:
    statuses = await read(app, measure, request.app.state.slos, app.backends.store,
                          now=app.metrics.clock(), requests=app.metrics.requests,
                          tenant_id=found.tenant_id)
    return page(request, "slo.html", who=found, slos=[s.to_json() for s in statuses])
