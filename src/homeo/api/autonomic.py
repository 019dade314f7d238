"""/v1/autonomic: what the autonomic loops found (HOMEO_AUTONOMIC=on), from
the store: the newest signals of each process running a loop, the diagnoses
that hold, recently cleared ones and recent decisions (admin role); the
decisions with their explanations, and approving one that waits (operator
role). What belongs to other tenants (their agents, jobs, share of the queue
and the decisions about them) is left out."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from homeo.api.deps import AppParts, caller, parts, read, requires
from homeo.autonomic.approve import ApprovalRefused, approve
from homeo.autonomic.loop import list_decisions, status
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
    result["act"] = app.settings.autonomic_act
    return result


@router.get("/decisions", dependencies=[requires("operator")])
async def decisions(
    app: Annotated[AppParts, Depends(parts)],
    found: Annotated[Caller, Depends(caller)],
    status: Annotated[str | None, Query(
        description="Only decisions in this status (dry_run, awaiting_approval,"
                    " executed, reverted...).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """The newest decisions of the autonomic loops, each with its explanation
    (signals, diagnosis, alternatives with scores, why this one) and outcome."""
    found_decisions = await read(app, list_decisions, app.backends.store,
                                 tenant_id=found.tenant_id, status=status, limit=limit)
    return {"act": app.settings.autonomic_act,
            "decisions": [d.model_dump() for d in found_decisions]}


@router.post("/decisions/{decision_id}/approve", dependencies=[requires("operator")])
async def approve_decision(
    decision_id: str,
    app: Annotated[AppParts, Depends(parts)],
    found: Annotated[Caller, Depends(caller)],
) -> dict[str, Any]:
    """Let a decision that waits for approval run: the loop that made it acts
    on its next step (404: no such decision for this tenant; 409: it does not
    wait for approval)."""
    try:
        decision = await asyncio.to_thread(approve, app.backends.store, decision_id,
                                           by=found.principal, tenant_id=found.tenant_id,
                                           now=time.time())
    except ApprovalRefused as refused:
        raise HTTPException(refused.status, str(refused)) from None
    return decision.model_dump()
