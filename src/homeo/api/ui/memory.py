"""The dashboard's memory pages: the tenant's knowledge collections, and a
collection's documents with a search box (hybrid, text or vector), read
through the same Knowledge as /v1/collections (member role, as there)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from homeo.api.collections import knowledge
from homeo.api.deps import requires
from homeo.api.ui.render import UI_PATH, page
from homeo.keys import Caller
from homeo.llm.base import ModelError
from homeo.memory.knowledge import Knowledge
from homeo.memory.store import KnowledgeError

router = APIRouter(prefix=f"{UI_PATH}/memory", include_in_schema=False)
Knowing = Annotated[Knowledge, Depends(knowledge)]
PAGE_SIZE = 50
MODES = ("hybrid", "text", "vector")


@router.get("")
async def collections_page(request: Request, knowing: Knowing,
                           found: Annotated[Caller, requires("member", session=True)]
                           ) -> HTMLResponse:
    listed = await knowing.read(knowing.store.list_collections, found.tenant_id)
    return page(request, "memory.html", who=found, collections=listed)


@router.get("/{name}")
async def collection_page(
    name: str, request: Request, knowing: Knowing,
    found: Annotated[Caller, requires("member", session=True)],
    q: Annotated[str, Query(max_length=2000)] = "",
    mode: Annotated[Literal["hybrid", "text", "vector"], Query()] = "hybrid",
) -> HTMLResponse:
    if await knowing.read(knowing.store.collection_version, found.tenant_id, name) is None:
        raise HTTPException(404, f"no collection {name!r} for this tenant;"
                                 f" {UI_PATH}/memory lists the ones it has")
    documents = await knowing.read(lambda: knowing.store.list_documents(
        found.tenant_id, name, limit=PAGE_SIZE))
    hits = None
    if q.strip():
        try:
            hits = await knowing.search(found.tenant_id, name, q.strip(), 10, mode)
        except (KnowledgeError, ModelError) as problem:
            raise HTTPException(422, f"the search failed: {problem}") from None
    return page(request, "collection.html", who=found, name=name, documents=documents,
                q=q, mode=mode, modes=MODES, hits=hits)
