"""Agent memory over HTTP: what the tenant's agents remembered.

    GET    /v1/memories?scope=&superseded=&limit=&before=   newest first
    GET    /v1/memories/search?q=&k=&scope=                 best first
    GET    /v1/memories/{id}                                one
    DELETE /v1/memories/{id}                                its row, vector and full text

The caller's API key names the tenant: another tenant's memory is a 404, as
one that does not exist. Searching does not count as using a memory (only an
agent's recall resets its decay).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from homeo.api.collections import knowledge
from homeo.api.deps import requires, tenant
from homeo.api.errors import error_response
from homeo.api.schemas import MAX_ROW_NUMBER
from homeo.memory.knowledge import MAX_K, Knowledge
from homeo.memory.memories import Memories
from homeo.memory.store import KnowledgeError

router = APIRouter(prefix="/v1/memories", tags=["memory"])
Tenant = Annotated[str, Depends(tenant)]
SCOPE = r"^(tenant|agent:[a-z0-9][a-z0-9_-]{0,63}|run:[A-Za-z0-9_-]{1,64})$"


async def memories(request: Request,
                   known: Annotated[Knowledge, Depends(knowledge)]) -> Memories:
    """The app's agent memory, made on first use with the knowledge's embedder."""
    made = getattr(request.app.state, "memories", None)
    if made is None:
        from homeo.memory.agent_memory import open_agent_memory_store
        from homeo.memory.lifecycle import Policy
        from homeo.sandbox.limits import parse_duration

        parts = request.app.state.parts
        settings = parts.settings
        policy = Policy(merge_similarity=settings.memory_merge_similarity,
                        half_life=parse_duration(settings.memory_half_life))
        store = await asyncio.to_thread(open_agent_memory_store, parts.backends)
        made = request.app.state.memories = Memories(store, known.embedder, policy)
    return made


Remembering = Annotated[Memories, Depends(memories)]
MemoryId = Annotated[int, Path(ge=1, le=MAX_ROW_NUMBER)]
Scope = Annotated[str | None, Query(
    pattern=SCOPE, description="tenant, agent:NAME or run:ID; all scopes when left out")]


class MemoryView(BaseModel):
    id: int
    scope: str
    text: str
    importance: float
    seen: int = Field(description="Times it was stored (merged duplicates count)")
    created_at: float
    updated_at: float
    last_used_at: float
    expires_at: float | None
    superseded_by: int | None
    superseded_at: float | None


class MemoryPage(BaseModel):
    memories: list[MemoryView]
    next_before: int | None


class MemoryHit(MemoryView):
    score: float
    strength: float = Field(description="Importance decayed by the time unused")


class MemoryResults(BaseModel):
    results: list[MemoryHit]


@router.get("", response_model=MemoryPage, dependencies=[requires("member")])
async def list_memories(
    remembering: Remembering, tenant_id: Tenant, scope: Scope = None,
    superseded: Annotated[bool, Query(description="Include superseded memories")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1, le=MAX_ROW_NUMBER,
                                        description="next_before of the previous page")]
    = None,
) -> Any:
    found = await asyncio.to_thread(lambda: remembering.store.list_memories(
        tenant_id, scope, superseded=superseded, limit=limit, before=before))
    return MemoryPage(memories=[MemoryView.model_validate(m.model_dump()) for m in found],
                      next_before=found[-1].id if len(found) == limit else None)


@router.get("/search", response_model=MemoryResults,
            dependencies=[requires("member")])
async def search_memories(
    request: Request, remembering: Remembering, tenant_id: Tenant,
    q: Annotated[str, Query(min_length=1, max_length=2000, description="What to look for")],
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10, scope: Scope = None,
) -> Any:
    try:
        hits = await remembering.recall(tenant_id, scope, q, k, touch=False)
    except KnowledgeError as problem:
        return error_response(request, 400, str(problem))
    return MemoryResults(results=[
        MemoryHit(**hit.memory.model_dump(), score=hit.score, strength=hit.strength)
        for hit in hits])


@router.get("/{memory_id}", response_model=MemoryView,
            dependencies=[requires("member")])
async def get_memory(memory_id: MemoryId, remembering: Remembering, tenant_id: Tenant) -> Any:
    found = await asyncio.to_thread(remembering.store.get, tenant_id, memory_id)
    if found is None:
        raise HTTPException(404, f"no memory {memory_id}")
    return MemoryView.model_validate(found.model_dump())


@router.delete("/{memory_id}", status_code=204,
               dependencies=[requires("member")])
async def delete_memory(memory_id: MemoryId, remembering: Remembering, tenant_id: Tenant) -> Response:
    if not await asyncio.to_thread(remembering.store.delete, tenant_id, memory_id):
        raise HTTPException(404, f"no memory {memory_id}")
    return Response(status_code=204)
