"""The dashboard's autonomic page: the loop's newest signals, the diagnoses
that hold and those that cleared, and its decisions, each with the
explanation Plan wrote (why this action, the alternatives and their scores),
for the caller's tenant, as GET /v1/autonomic (admin role) shows them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from homeo.api.deps import AppParts, parts, read, requires
from homeo.api.ui.render import UI_PATH, page
from homeo.autonomic.loop import status
from homeo.keys import Caller

router = APIRouter(prefix=f"{UI_PATH}/autonomic", include_in_schema=False)


@router.get("")
async def autonomic_page(request: Request, app: Annotated[AppParts, Depends(parts)],
                         found: Annotated[Caller, requires("admin", session=True)]
                         ) -> HTMLResponse:
    found_status = await read(app, status, app.backends.store,
                              now=request.app.state.wall_clock(), tenant_id=found.tenant_id)
    return page(request, "autonomic.html", who=found, loop=app.settings.autonomic,
                act=app.settings.autonomic_act, **found_status)
