"""/v1/audit: the tenant's audit log, oldest first, paged; admins only.
`homeo audit verify` checks it with the public key (homeo.audit)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from homeo.api.deps import AppParts, parts, read, requires, tenant
from homeo.api.schemas import MAX_ROW_NUMBER

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", dependencies=[requires("admin")])
async def list_audit(
    request: Request,
    app: Annotated[AppParts, Depends(parts)],
    tenant_id: Annotated[str, Depends(tenant)],
    after: Annotated[int, Query(ge=0, le=MAX_ROW_NUMBER,
                                description="Entries after this seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    kind: Annotated[str | None, Query(max_length=64, description="e.g. key.created")] = None,
) -> dict[str, Any]:
    if request.app.state.audit is None:
        raise HTTPException(404, "this server keeps no audit log: set HOMEO_AUDIT_KEY_FILE"
                            " (`homeo audit keygen PATH` makes a key)")
    store = app.backends.store
    entries = await read(app, store.list_audit, tenant_id, after_seq=after, limit=limit,
                         kind=kind)
    head = await read(app, store.audit_head, tenant_id)
    return {
        "entries": [entry.model_dump() for entry in entries],
        "next_after": entries[-1].seq if len(entries) == limit else None,
        "head": None if head is None else head.model_dump(),
    }
