"""/healthz (the process answers), /readyz (it can do work), /metrics.

/metrics needs no API key (scrapers have none). With HOMEO_METRICS_TOKEN set it
requires `Authorization: Bearer <that token>` and shows per-tenant series;
without one it is open and shows usage summed over tenants only."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from homeo.api.deps import AppParts, parts, public

router = APIRouter(tags=["health"])
Parts = Annotated[AppParts, Depends(parts)]


@router.get("/healthz", dependencies=[public()])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", dependencies=[public()])
async def readyz(app: Parts) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await asyncio.to_thread(app.backends.store.ping)
        checks["store"] = "ok"
    except Exception as error:
        checks["store"] = f"unreachable: {error}"
    if app.backends.shared is None:  # the queue lives apart (on Redis): check it too
        try:
            await asyncio.to_thread(app.backends.queue.ping)
            checks["queue"] = "ok"
        except Exception as error:
            checks["queue"] = f"unreachable: {error}"
    if app.worker is None:
        checks["workers"] = "none in this process (run `homeo worker`)"
    else:
        checks["workers"] = app.worker.health() or "ok"
    reachable = checks["store"] == checks.get("queue", "ok") == "ok"
    ready = reachable and checks["workers"] in ("ok", "none in this process (run `homeo worker`)")
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", dependencies=[public()])
async def metrics(app: Parts, request: Request) -> Response:
    token = app.settings.metrics_token.get_secret_value()
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise HTTPException(
                401, "/metrics needs `Authorization: Bearer <HOMEO_METRICS_TOKEN>`",
                headers={"WWW-Authenticate": "Bearer"},
            )
    body = await asyncio.to_thread(app.metrics.render, tenants=bool(token))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
