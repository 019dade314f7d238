"""Backup and restore of the caller's tenant's memory over HTTP; admins only.

    POST /v1/memory/backup    the tenant's memory as one tar file (a download)
    POST /v1/memory/restore   replace the tenant's memory with a backup sent as
                              the body (Content-Type: application/x-tar)

The caller's API key names the tenant: a backup holds that tenant only, and a
backup of another tenant is refused (409). A restore checks the whole backup
before it changes anything (homeo.memory.backup); a damaged one is a 400 that
names the file and the problem. A tenant marked sensitive gets an encrypted
backup; when the server lacks the key to write or open one (no key file, or
another one) the answer is a 409 that names the key. Each is recorded in the
tenant's audit log.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask

from homeo.api.deps import AppParts, parts, requires
from homeo.api.errors import error_response
from homeo.audit import AuditLog, Event
from homeo.keys import Caller
from homeo.memory.backup import (
    BackupError,
    BackupInvalid,
    BackupKeyError,
    Manifest,
    RestoreConflict,
    backup_tenant,
    restore_tenant,
    restored,
)

router = APIRouter(prefix="/v1/memory", tags=["memory"])
Parts = Annotated[AppParts, Depends(parts)]
Admin = Annotated[Caller, requires("admin")]
TAR_TYPES = ("application/x-tar", "application/octet-stream")

_RESTORE_DOC = {"requestBody": {"required": True, "content": {
    "application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}
_BACKUP_DOC = {"responses": {"200": {"description": "The backup (a tar file)", "content": {
    "application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}}


@router.post("/backup", response_class=FileResponse, openapi_extra=_BACKUP_DOC)
async def backup(request: Request, app: Parts, found: Admin) -> Any:
    """The tenant's collections, documents, chunks, vectors and agent memories,
    read in one snapshot, as a tar file with a manifest of sha256 sums."""
    folder = Path(tempfile.mkdtemp(prefix="homeo-backup-"))
    name = f"homeo-memory-{found.tenant_id}.tar"
    try:
        try:
            summary = await asyncio.to_thread(backup_tenant, app.backends, found.tenant_id,
                                              folder / name)
        except BackupKeyError as problem:
            shutil.rmtree(folder, ignore_errors=True)
            return error_response(request, 409, str(problem))
        audit: AuditLog | None = request.app.state.audit
        if audit is not None:
            await asyncio.to_thread(audit.record, found.tenant_id, Event(
                "memory.backup", found.principal, f"tenant:{found.tenant_id}",
                {"counts": summary.counts.model_dump(), "bytes": summary.bytes}))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(summary.path, media_type="application/x-tar", filename=name,
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


@router.post("/restore", openapi_extra=_RESTORE_DOC)
async def restore(request: Request, app: Parts, found: Admin) -> Any:
    """Replace the tenant's memory with the backup in the body, in one
    transaction, after checking every file and record of it."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in TAR_TYPES:
        return error_response(request, 415, f"send the backup as the body with Content-Type"
                              f" application/x-tar (a file `homeo memory backup` or POST"
                              f" /v1/memory/backup wrote), not {kind or 'no type'}")
    folder = Path(tempfile.mkdtemp(prefix="homeo-restore-"))
    try:
        upload = folder / "backup.tar"
        with upload.open("wb") as out:
            async for block in request.stream():
                await asyncio.to_thread(out.write, block)
        audit: AuditLog | None = request.app.state.audit

        def record(manifest: Manifest) -> None:
            if audit is not None:
                audit.record(found.tenant_id, Event(
                    "memory.restore", found.principal, f"tenant:{found.tenant_id}",
                    {"counts": manifest.counts.model_dump(),
                     "backup_created_at": manifest.created_at}))

        try:
            manifest = await asyncio.to_thread(restore_tenant, app.backends, upload,
                                               found.tenant_id, in_transaction=record)
        except (RestoreConflict, BackupKeyError) as problem:
            return error_response(request, 409, str(problem).replace(str(upload), "the body"))
        except BackupInvalid as problem:
            return error_response(request, 400, str(problem).replace(str(upload), "the body"))
        except BackupError as problem:
            return error_response(request, 400, str(problem))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return JSONResponse(restored(manifest))

