"""/v1/agents: the agents this tenant can run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from homeo.api.deps import AppParts, parts, read, requires, tenant
from homeo.api.schemas import AgentView

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
