"""/v1/autonomic: what the autonomic loops found (HOMEO_AUTONOMIC=on), from
the store: the newest signals of each process running a loop, the diagnoses
that hold, and recently cleared ones. Needs the admin role; what belongs to
other tenants (their agents, jobs and share of the queue) is left out."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from homeo.api.deps import AppParts, caller, parts, read, requires
from homeo.autonomic.loop import status
from homeo.keys import Caller

router = APIRouter(prefix="/v1/autonomic", tags=["autonomic"])


@router.get("", dependencies=[requires("admin")])
async def autonomic_status(
    app: Annotated[AppParts, Depends(parts)],
    found: Annotated[Caller, Depends(caller)],
) -> dict[str, Any]:
    result = await read(app, status, app.backends.store, now=time.time(),
                        tenant_id=found.tenant_id)
    result["loop"] = app.settings.autonomic
    return result
