"""/v1/keys: a tenant's admins manage the tenant's API keys over HTTP, as
`homeo keys` does from a shell. Every route needs the admin role, and sees
and touches only its own tenant's keys."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from homeo.api.deps import AppParts, caller, parts, read, requires
from homeo.keys import Caller, create_key, revoke_key
from homeo.store.models import ApiKey, KeyRole

router = APIRouter(prefix="/v1/keys", tags=["keys"])
Parts = Annotated[AppParts, Depends(parts)]
Admin = Annotated[Caller, Depends(caller)]  # each route requires the admin role


class KeyView(BaseModel):
    """A key as listed: never its secret."""

    id: str
    tenant_id: str
    name: str
    role: KeyRole
    created_at: float
    revoked_at: float | None
    active: bool

    @classmethod
    def of(cls, record: ApiKey) -> KeyView:
        return cls(active=record.active, **record.model_dump(exclude={"secret_hash"}))


class CreatedKey(KeyView):
    key: str = Field(description="The key itself: shown only in this answer, never stored.")


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200, description="What the key is for.")
    role: KeyRole = "member"


@router.get("", response_model=list[KeyView], dependencies=[requires("admin")])
async def list_keys(app: Parts, caller: Admin) -> list[KeyView]:
    return [KeyView.of(record)
            for record in await read(app, app.backends.store.list_keys, caller.tenant_id)]


@router.post("", response_model=CreatedKey, status_code=201, dependencies=[requires("admin")])
async def new_key(body: NewKey, request: Request, app: Parts, caller: Admin) -> CreatedKey:
    # argon2 hashing takes tens of milliseconds: off the event loop.
    key, record = await asyncio.to_thread(
        create_key, app.backends.store, caller.tenant_id, body.name, role=body.role,
        audit=request.app.state.audit, actor=caller.principal)
    return CreatedKey(key=key, **KeyView.of(record).model_dump())


@router.post("/{key_id}/revoke", response_model=KeyView, dependencies=[requires("admin")])
async def revoke(key_id: str, request: Request, app: Parts, caller: Admin) -> KeyView:
    """Revoke one of the tenant's keys (this one included); servers refuse it
    within 5 seconds. Revoking a revoked key changes nothing."""
    record = await read(app, app.backends.store.get_key, key_id)
    if record is None or record.tenant_id != caller.tenant_id:
        raise HTTPException(404, f"no API key {key_id!r} in this tenant")
    revoked = await asyncio.to_thread(revoke_key, app.backends.store, key_id,
                                      audit=request.app.state.audit, actor=caller.principal)
    assert revoked is not None  # it existed a moment ago, and keys are never deleted
    return KeyView.of(revoked)
