"""/v1/agents: the agents this tenant can run, and their versions' KPIs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from homeo.api.deps import AppParts, parts, read, requires, tenant
from homeo.api.schemas import AgentView
from homeo.evolve.kpis import VersionKPIs, version_kpis

router = APIRouter(prefix="/v1/agents", tags=["agents"])


@router.get("", response_model=list[AgentView], dependencies=[requires("viewer")])
async def list_agents(
    app: Annotated[AppParts, Depends(parts)], tenant_id: Annotated[str, Depends(tenant)]
) -> list[AgentView]:
    return [
        AgentView(
            name=record.name,
            description=record.spec.get("description", ""),
            model=record.spec.get("model", ""),
            tools=record.spec.get("tools", []),
            max_steps=record.spec.get("max_steps", 0),
        )
        for record in await read(app, app.backends.store.list_agents, tenant_id)
    ]


class VersionsView(BaseModel):
    agent: str
    versions: list[VersionKPIs]


@router.get("/{name}/versions", response_model=VersionsView,
            dependencies=[requires("viewer")])
async def agent_versions(
    name: str,
    app: Annotated[AppParts, Depends(parts)],
    tenant_id: Annotated[str, Depends(tenant)],
) -> VersionsView:
    """Every version of the agent, oldest first, with its KPIs and their 95%
    confidence intervals (over its runs that ended succeeded or failed)."""
    versions = await read(app, version_kpis, app.backends.store, tenant_id, name)
    if not versions:
        raise HTTPException(404, f"agent {name!r} has no versions for this tenant;"
                            " GET /v1/agents lists the agents it has")
    return VersionsView(agent=name, versions=versions)
