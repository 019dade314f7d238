"""Knowledge over HTTP: documents in named collections, and search.

    GET    /v1/collections                                the tenant's collections
    DELETE /v1/collections/{name}                         a collection and all in it
    POST   /v1/collections/{name}/documents               add one (JSON text, or a file):
                                                          201 and the document, or, when its
                                                          text is longer than
                                                          HOMEO_MEMORY_INGEST_INLINE_CHARS,
                                                          202 and an ingestion a worker indexes
    GET    /v1/collections/{name}/ingestions/{id}         an ingestion's status and progress
    GET    /v1/collections/{name}/documents               list them, newest first
    GET    /v1/collections/{name}/documents/{id}          one, with its text
    PUT    /v1/collections/{name}/documents/{id}          replace its text (a long one: 202,
                                                          as POST)
    DELETE /v1/collections/{name}/documents/{id}          remove it, its chunks and vectors
    GET    /v1/collections/{name}/search?q=&k=&mode=      chunks, best first

The caller's API key names the tenant: another tenant's collection or
document is a 404, as one that does not exist.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from homeo.api.deps import requires, tenant
from homeo.api.errors import error_response
from homeo.api.openai_compat import status_of
from homeo.llm.base import ModelError
from homeo.memory.extract import SUFFIXES, ExtractError, Extracted, extract, format_of, from_text
from homeo.memory.knowledge import MAX_K, Knowledge, SearchHit, check_collection_name
from homeo.memory.store import (
    CollectionNotFound,
    Document,
    DocumentNotFound,
    EmbeddingMismatch,
    Ingestion,
    KnowledgeError,
)

router = APIRouter(prefix="/v1/collections", tags=["knowledge"])
Tenant = Annotated[str, Depends(tenant)]


async def knowledge(request: Request) -> Knowledge:
    """The app's knowledge, made on first use (503 if the embedding alias is missing)."""
    made = getattr(request.app.state, "knowledge", None)
    if made is None:
        from homeo.llm.resolve import UnknownModel
        from homeo.memory.knowledge import open_knowledge

        parts = request.app.state.parts
        try:
            made = open_knowledge(parts.settings, parts.backends, request.app.state.models)
        except UnknownModel as problem:
            raise HTTPException(503, f"knowledge needs an embedding model: {problem}"
                                " (set HOMEO_MEMORY_EMBEDDING_MODEL)") from None
        request.app.state.knowledge = made
    return made


Knowing = Annotated[Knowledge, Depends(knowledge)]


class DocumentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    format: Literal["text", "markdown", "html"] = "markdown"
    title: str | None = Field(None, max_length=1000)
    source: str | None = Field(None, max_length=4000)


class DocumentView(BaseModel):
    id: str
    collection: str
    title: str | None
    source: str | None
    format: str
    chars: int
    chunks: int
    content_hash: str
    created_at: float
    updated_at: float
    text: str | None = None

    @classmethod
    def of(cls, document: Document) -> DocumentView:
        return cls.model_validate(document.model_dump())


class IngestionView(BaseModel):
    id: str
    collection: str
    status: Literal["queued", "indexing", "done", "failed"] = Field(
        description="queued, indexing (chunks_done of chunks_total embedded), done"
        " (document_id is searchable) or failed (error says why)")
    chunks_done: int
    chunks_total: int | None = Field(description="None until a worker has chunked the text")
    document_id: str | None
    error: str | None
    title: str | None
    source: str | None
    content_hash: str
    created_at: float
    updated_at: float
    status_url: str

    @classmethod
    def of(cls, ingestion: Ingestion) -> IngestionView:
        return cls(**ingestion.model_dump(include=set(cls.model_fields) - {"status_url"}),
                   status_url=f"/v1/collections/{ingestion.collection}/ingestions/{ingestion.id}")


class CollectionView(BaseModel):
    name: str
    documents: int
    chunks: int
    model: str | None
    dimensions: int | None
    created_at: float


class DocumentPage(BaseModel):
    documents: list[DocumentView]
    next_before: str | None


class HitView(BaseModel):
    chunk_id: int
    document_id: str
    title: str | None
    source: str | None
    position: int = Field(description="The chunk's place in its document: 0, 1, 2...")
    start: int = Field(description="Where the chunk starts in the document's text")
    end: int
    text: str
    score: float
    text_rank: int | None
    vector_rank: int | None

    @classmethod
    def of(cls, hit: SearchHit) -> HitView:
        chunk = hit.chunk
        return cls(chunk_id=chunk.id, document_id=chunk.document_id, title=chunk.title,
                   source=chunk.source, position=chunk.position, start=chunk.start,
                   end=chunk.end, text=chunk.text, score=hit.score, text_rank=hit.text_rank,
                   vector_rank=hit.vector_rank)


class SearchResults(BaseModel):
    collection: str
    mode: str
    results: list[HitView]


def _refused(request: Request, problem: Exception) -> JSONResponse:
    """The error answer for what the knowledge verbs raise."""
    if isinstance(problem, CollectionNotFound | DocumentNotFound):
        return error_response(request, 404, str(problem))
    if isinstance(problem, EmbeddingMismatch):
        return error_response(request, 409, str(problem))
    if isinstance(problem, KnowledgeError | ExtractError):
        return error_response(request, 400, str(problem))
    assert isinstance(problem, ModelError)
    status, kind = status_of(problem)
    return error_response(request, status, str(problem), kind=kind)


def _name(name: str) -> None:
    try:
        check_collection_name(name)
    except KnowledgeError as problem:
        raise HTTPException(400, str(problem)) from None


async def _document_of(request: Request) -> tuple[Extracted, str | None, str | None]:
    """The document a POST or PUT sends: JSON `{"text", "format", "title", "source"}`,
    or a multipart form with a `file` (and optional `title`)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, "the form has no `file` field: send the document as"
                                " `file=@PATH`")
        name = upload.filename or ""
        format = format_of(name)
        if format is None:
            readable = ", ".join(sorted(SUFFIXES))
            raise HTTPException(415, f"cannot read {name!r}: send a file ending in {readable}")
        title = form.get("title")
        extracted = extract(await upload.read(), format)
        return extracted, title if isinstance(title, str) else None, name
    if kind not in ("application/json", ""):
        raise HTTPException(415, f"send the document as application/json"
                            f" ({{\"text\": ...}}) or multipart/form-data (a file), not {kind}")
    try:
        body = DocumentBody.model_validate_json(await request.body())
    except ValidationError as problem:
        first = problem.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise HTTPException(422, f"invalid document: {where}: {first['msg']}") from None
    return from_text(body.text, body.format), body.title, body.source


_BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": DocumentBody.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}, "title": {"type": "string"}}}},
}}}


@router.get("", dependencies=[requires("member")])
async def list_collections(knowing: Knowing, tenant_id: Tenant) -> dict[str, list[CollectionView]]:
    found = await knowing.read(knowing.store.list_collections, tenant_id)
    return {"collections": [CollectionView.model_validate(c.model_dump()) for c in found]}


@router.delete("/{name}", status_code=204, dependencies=[requires("member")])
async def delete_collection(name: str, request: Request, knowing: Knowing,
                            tenant_id: Tenant) -> Response:
    if not await asyncio.to_thread(knowing.store.delete_collection, tenant_id, name):
        return error_response(request, 404, f"no collection {name!r}")
    return Response(status_code=204)


@router.post("/{name}/documents", status_code=201, response_model=DocumentView,
             openapi_extra=_BODY_DOC, responses={202: {
                 "model": IngestionView, "description": "Accepted: a worker indexes it;"
                 " GET its status_url (the Location header) for progress"}},
    dependencies=[requires("member")],
)
async def add_document(name: str, request: Request, knowing: Knowing,
                       tenant_id: Tenant) -> Any:
    _name(name)
    try:
        extracted, title, source = await _document_of(request)
        if queued := await _queue_if_long(request, knowing, tenant_id, name, extracted, title,
                                          source, None):
            return queued
        made = await knowing.add(tenant_id, name, extracted, title=title, source=source)
    except (KnowledgeError, ExtractError, ModelError) as problem:
        return _refused(request, problem)
    return JSONResponse(DocumentView.of(made).model_dump(), status_code=201)


async def _queue_if_long(request: Request, knowing: Knowledge, tenant_id: str, name: str,
                         extracted: Extracted, title: str | None, source: str | None,
                         replace: str | None) -> JSONResponse | None:
    """A 202 and the ingestion a worker indexes, for a text longer than
    HOMEO_MEMORY_INGEST_INLINE_CHARS; None for one indexed before the answer."""
    parts = request.app.state.parts
    if len(extracted.text) <= parts.settings.memory_ingest_inline_chars:
        return None
    from homeo.engine.ingest import submit_ingestion

    ingestion, _ = await asyncio.to_thread(
        lambda: submit_ingestion(parts.backends, knowing.store, tenant_id, name, extracted,
                                 title=title, source=source, replace=replace))
    view = IngestionView.of(ingestion)
    return JSONResponse(view.model_dump(), status_code=202, headers={"location": view.status_url})


@router.get("/{name}/ingestions/{ingestion_id}", response_model=IngestionView,
            dependencies=[requires("member")])
async def get_ingestion(name: str, ingestion_id: str, request: Request, knowing: Knowing,
                        tenant_id: Tenant) -> Any:
    found = await knowing.read(knowing.store.get_ingestion, tenant_id, ingestion_id)
    if found is None or found.collection != name:
        return error_response(request, 404,
                              f"no ingestion {ingestion_id!r} in collection {name!r}")
    return IngestionView.of(found)


@router.put("/{name}/documents/{document_id}", response_model=DocumentView,
            openapi_extra=_BODY_DOC, responses={202: {
                "model": IngestionView, "description": "Accepted: a worker replaces it"}},
    dependencies=[requires("member")],
)
async def replace_document(name: str, document_id: str, request: Request, knowing: Knowing,
                           tenant_id: Tenant) -> Any:
    try:
        if await knowing.read(knowing.store.get_document, tenant_id, name, document_id) is None:
            raise DocumentNotFound(f"no document {document_id!r} in collection {name!r}")
        extracted, title, source = await _document_of(request)
        if queued := await _queue_if_long(request, knowing, tenant_id, name, extracted, title,
                                          source, document_id):
            return queued
        made = await knowing.add(tenant_id, name, extracted, title=title, source=source,
                                 replace=document_id)
    except (KnowledgeError, ExtractError, ModelError) as problem:
        return _refused(request, problem)
    return DocumentView.of(made)


@router.get("/{name}/documents", response_model=DocumentPage, dependencies=[requires("member")])
async def list_documents(
    name: str, request: Request, knowing: Knowing, tenant_id: Tenant,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[str | None, Query(description="next_before of the previous page")] = None,
) -> Any:
    if await knowing.read(knowing.store.collection_version, tenant_id, name) is None:
        return error_response(request, 404, f"no collection {name!r}")
    found = await knowing.read(lambda: knowing.store.list_documents(
        tenant_id, name, limit=limit, before=before))
    return DocumentPage(documents=[DocumentView.of(d) for d in found],
                        next_before=found[-1].id if len(found) == limit else None)


@router.get("/{name}/documents/{document_id}", response_model=DocumentView,
            dependencies=[requires("member")])
async def get_document(name: str, document_id: str, request: Request, knowing: Knowing,
                       tenant_id: Tenant) -> Any:
    found = await knowing.read(knowing.store.get_document, tenant_id, name, document_id)
    if found is None:
        return error_response(request, 404, f"no document {document_id!r} in collection {name!r}")
    return DocumentView.of(found)


@router.delete("/{name}/documents/{document_id}", status_code=204,
               dependencies=[requires("member")])
async def delete_document(name: str, document_id: str, request: Request, knowing: Knowing,
                          tenant_id: Tenant) -> Response:
    if not await knowing.delete(tenant_id, name, document_id):
        return error_response(request, 404, f"no document {document_id!r} in collection {name!r}")
    return Response(status_code=204)


@router.get("/{name}/search", response_model=SearchResults, dependencies=[requires("member")])
async def search(
    name: str, request: Request, knowing: Knowing, tenant_id: Tenant,
    q: Annotated[str, Query(min_length=1, max_length=2000, description="What to look for")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many chunks")] = 10,
    mode: Annotated[Literal["hybrid", "text", "vector"], Query()] = "hybrid",
) -> Any:
    try:
        hits = await knowing.search(tenant_id, name, q, k, mode)
    except (KnowledgeError, ModelError) as problem:
        return _refused(request, problem)
    return SearchResults(collection=name, mode=mode, results=[HitView.of(hit) for hit in hits])
