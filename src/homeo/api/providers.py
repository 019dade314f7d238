"""/v1/providers: each model deployment, the aliases that use it, and its circuit breaker."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from homeo.api.deps import requires
from homeo.llm.resolve import ModelCatalog

router = APIRouter(prefix="/v1/providers", tags=["providers"])


async def models(request: Request) -> ModelCatalog:
    return request.app.state.models


@router.get("", dependencies=[requires("viewer")])
async def list_providers(catalog: Annotated[ModelCatalog, Depends(models)]) -> dict[str, Any]:
    listed = []
    for entry, breaker, aliases in catalog.deployments():
        calls, failures = breaker.window()
        listed.append({
            "name": entry.key,
            "model": entry.model,
            "aliases": aliases,
            "breaker": {
                "state": breaker.state,
                "calls_in_window": calls,
                "failures_in_window": failures,
                "retry_in_seconds": round(breaker.retry_in(), 3),
            },
        })
    return {"providers": listed}
