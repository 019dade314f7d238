"""/v1/slo: each SLO's value, error budget left and burn rates for the
caller's tenant (runs and steps of that tenant; API latency of this server
process, over every tenant). Global SLO views are the CLI's (`homeo slo`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from homeo.api.deps import AppParts, parts, read, requires, tenant
from homeo.observe.slo.measure import measure

router = APIRouter(prefix="/v1/slo", tags=["slo"])


@router.get("", dependencies=[requires("viewer")])
async def list_slos(
    request: Request,
    app: Annotated[AppParts, Depends(parts)],
    tenant_id: Annotated[str, Depends(tenant)],
) -> dict[str, Any]:
    now = app.metrics.clock()
    statuses = await read(app, measure, request.app.state.slos, app.backends.store, now=now,
                          requests=app.metrics.requests, tenant_id=tenant_id)
    return {"tenant": tenant_id, "at": now, "slos": [status.to_json() for status in statuses]}
