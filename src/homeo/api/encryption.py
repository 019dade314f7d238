"""/v1/tenant/encryption: a tenant's admins mark its data sensitive, so its
runs (inputs, outputs, checkpoints, steps) are kept encrypted at rest from
then on (homeo.crypto). Each change is an audit entry, committed with it."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from homeo.api.deps import AppParts, caller, parts, read, requires
from homeo.crypto.tenants import TenantCipher, change_encryption
from homeo.keys import Caller
from homeo.store.models import TenantEncryption

router = APIRouter(prefix="/v1/tenant/encryption", tags=["encryption"])
Parts = Annotated[AppParts, Depends(parts)]
Admin = Annotated[Caller, Depends(caller)]  # each route requires the admin role


# What marking a tenant sensitive encrypts, and what it does not (yet): said
# in every answer, so nobody takes the rest for encrypted.
ENCRYPTED = ["runs.input", "runs.output", "runs.checkpoint", "steps.input", "steps.output",
             "step_checkpoints.delta", "agent memories' text",
             "collection documents' and chunks' text",
             "memory backups' data files (homeo memory backup, POST /v1/memory/backup)"]
NOT_ENCRYPTED = ["runs.error", "steps.error", "runs.waiting_for",
                 "full-text index terms (memories, chunks)", "vectors (memories, chunks)",
                 "memories' subjects", "documents' titles, sources and content hashes",
                 "audit log"]


class EncryptionView(BaseModel):
    tenant_id: str
    sensitive: bool = Field(description="New runs of the tenant are kept encrypted at rest.")
    data_key_id: str | None = Field(description="The tenant's AES-256-GCM data key.")
    key_file_configured: bool = Field(
        description="The server has HOMEO_ENCRYPTION_KEY_FILE, so it can encrypt.")
    encrypts: list[str] = Field(ENCRYPTED, description="What is kept encrypted when sensitive.")
    does_not_encrypt: list[str] = Field(NOT_ENCRYPTED,
                                        description="What stays in plain text regardless.")


class EncryptionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sensitive: bool = Field(description="true: keep the tenant's runs encrypted from now on;"
                            " false: write new ones in plain text (sealed ones stay sealed).")


def _view(tenant_id: str, setting: TenantEncryption | None,
          cipher: TenantCipher | None) -> EncryptionView:
    return EncryptionView(tenant_id=tenant_id,
                          sensitive=setting is not None and setting.sensitive,
                          data_key_id=None if setting is None else setting.data_key_id,
                          key_file_configured=cipher is not None)


@router.get("", response_model=EncryptionView, dependencies=[requires("admin")])
async def show(request: Request, app: Parts, caller: Admin) -> EncryptionView:
    setting = await read(app, app.backends.store.tenant_encryption, caller.tenant_id)
    return _view(caller.tenant_id, setting, request.app.state.cipher)


@router.put("", response_model=EncryptionView, dependencies=[requires("admin")])
async def change(body: EncryptionChange, request: Request, app: Parts,
                 caller: Admin) -> EncryptionView:
    cipher: TenantCipher | None = request.app.state.cipher
    if cipher is None:
        raise HTTPException(409, "this server has no encryption key file: set"
                            " HOMEO_ENCRYPTION_KEY_FILE (`homeo crypto keygen PATH` makes one)"
                            " and restart it, then mark the tenant sensitive")
    setting = await asyncio.to_thread(change_encryption, cipher, request.app.state.audit,
                                      caller.tenant_id, body.sensitive, caller.principal)
    return _view(caller.tenant_id, setting, cipher)
