"""The knowledge store: collections of documents, their chunks, each chunk's
vector and full-text entry. Every backend (SQLite, PostgreSQL) implements
`KnowledgeStore` and passes the one contract suite in
tests/memory/test_store_contract.py.

Every method takes a `tenant_id` and never reads or changes another tenant's
records. The store is the truth: in-process indexes are built from it and
rebuilt when a collection's `version` moves (each write raises it).

A collection's chunks all come from one embedding model with one dimension:
the first document sets them, and a write with another model is refused
(`EmbeddingMismatch`) until the collection is emptied or re-embedded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from homeo.backends import Backends


class KnowledgeError(Exception):
    """A knowledge operation was refused; the message says what to do."""


class CollectionNotFound(KnowledgeError, LookupError):
    """The tenant has no collection by that name."""


class DocumentNotFound(KnowledgeError, LookupError):
    """The collection has no document with that id."""


class EmbeddingMismatch(KnowledgeError):
    """The collection's vectors come from another model (or dimension) than the
    one asked to add to it or search it: they must never be mixed."""


class Collection(BaseModel):
    name: str
    model: str | None  # the embedding model of its chunks; None while it has none
    dimensions: int | None
    documents: int
    chunks: int
    created_at: float


class Document(BaseModel):
    id: str
    collection: str
    title: str | None
    source: str | None  # where it came from (a file path, a URL), as the caller said
    format: str
    chars: int
    chunks: int
    content_hash: str  # sha256 of the text, so re-adding an unchanged file is a no-op
    created_at: float
    updated_at: float
    text: str | None = None  # only from `get_document`


@dataclass(frozen=True, slots=True)
class NewDocument:
    title: str | None
    source: str | None
    format: str
    text: str
    content_hash: str


@dataclass(frozen=True, slots=True)
class NewChunk:
    position: int
    text: str
    start: int
    end: int
    content_hash: str  # sha256 of `text`: the embedding cache key
    vector: bytes  # little-endian float32, `dimensions` of them


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    name: str
    dimensions: int


IngestionStatus = Literal["queued", "indexing", "done", "failed"]
INGESTION_STATUSES: tuple[str, ...] = ("queued", "indexing", "done", "failed")


class Ingestion(BaseModel):
    """A document accepted for indexing by a queue job (homeo.memory.ingest):
    its text is stored first, its chunks become searchable all at once when
    the job finishes. `chunks_done` of `chunks_total` are embedded so far
    (`chunks_total` is None until the job has chunked the text)."""

    id: str
    collection: str
    idempotency_key: str
    title: str | None
    source: str | None
    format: str
    content_hash: str
    replace_document: str | None  # the document it replaces when it finishes
    status: IngestionStatus
    chunks_total: int | None
    chunks_done: int
    document_id: str | None  # once done
    error: str | None  # why it failed
    generation: int  # raised each time a failed ingestion is submitted again
    created_at: float
    updated_at: float
    text: str | None = None  # only from `get_ingestion(..., with_text=True)`

    @property
    def markdown(self) -> bool:
        """Whether `#` lines in its text are headings (as Extracted.markdown)."""
        return self.format in ("markdown", "html")


@dataclass(frozen=True, slots=True)
class NewIngestion:
    collection: str
    idempotency_key: str
    document: NewDocument
    replace_document: str | None = None


@dataclass(frozen=True, slots=True)
class StagedVector:
    """One chunk's vector, embedded by an ingestion that has not finished."""

    position: int
    content_hash: str
    vector: bytes


class ChunkHit(BaseModel):
    id: int
    document_id: str
    title: str | None
    source: str | None
    position: int
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class VectorTable:
    """Every vector of a collection, for an in-process index."""

    version: str  # as `collection_version` says
    model: str | None
    dimensions: int | None
    ids: list[int]
    vectors: list[bytes]


class KnowledgeStore(ABC):
    # True when reads may run on the event loop (SQLite in WAL mode).
    inline_reads: bool = False

    # --- collections ------------------------------------------------------
    @abstractmethod
    def get_collection(self, tenant_id: str, name: str) -> Collection | None: ...

    @abstractmethod
    def list_collections(self, tenant_id: str) -> list[Collection]:
        """By name."""

    @abstractmethod
    def delete_collection(self, tenant_id: str, name: str) -> bool:
        """Remove the collection, its documents, chunks, vectors and full-text entries."""

    @abstractmethod
    def collection_version(self, tenant_id: str, name: str) -> str | None:
        """The cheap check an index makes before each search: it changes with
        every write to the collection. None: no such collection."""

    # --- documents --------------------------------------------------------
    @abstractmethod
    def put_document(
        self,
        tenant_id: str,
        collection: str,
        document: NewDocument,
        chunks: list[NewChunk],
        model: EmbeddingModel,
        *,
        replace: str | None = None,
        now: float | None = None,
    ) -> Document:
        """Store a document and its chunks in one transaction, making the
        collection if it is new. `replace` names a document whose text, chunks,
        vectors and full-text entries are replaced (DocumentNotFound if it is
        not in the collection). EmbeddingMismatch if the collection holds chunks
        of another model or dimension."""

    @abstractmethod
    def get_document(self, tenant_id: str, collection: str, document_id: str) -> Document | None:
        """With its text."""

    @abstractmethod
    def find_document(self, tenant_id: str, collection: str, source: str) -> Document | None:
        """The newest document added from `source`, without its text."""

    @abstractmethod
    def list_documents(
        self, tenant_id: str, collection: str, *, limit: int = 100, before: str | None = None
    ) -> list[Document]:
        """Newest first, without their text; `before` is a document id to page on from."""

    @abstractmethod
    def delete_document(self, tenant_id: str, collection: str, document_id: str) -> bool:
        """Remove the document's text, chunks, vectors and full-text entries."""

    # --- chunks -----------------------------------------------------------
    @abstractmethod
    def cached_vectors(self, tenant_id: str, model: EmbeddingModel,
                       hashes: list[str]) -> dict[str, bytes]:
        """Vectors this tenant already has for chunks with these content hashes,
        made by `model`: text embedded once is not embedded again."""

    @abstractmethod
    def text_search(self, tenant_id: str, collection: str, terms: list[str],
                    k: int) -> list[tuple[int, float]]:
        """(chunk id, score), best first: chunks holding any of `terms` (words,
        already split; stemmed by the database), ranked by the database's
        full-text ranking (SQLite FTS5 bm25; PostgreSQL ts_rank_cd)."""

    @abstractmethod
    def vector_table(self, tenant_id: str, collection: str) -> VectorTable | None:
        """Every chunk id and vector of the collection, with its version."""

    @abstractmethod
    def chunk_texts(self, tenant_id: str, collection: str) -> dict[int, str] | None:
        """Every chunk's text by id (to embed them again); None: no collection."""

    @abstractmethod
    def replace_vectors(self, tenant_id: str, collection: str, model: EmbeddingModel,
                        vectors: dict[int, bytes]) -> None:
        """Give the chunks these vectors of `model`, and the collection that
        model, in one transaction. KnowledgeError unless `vectors` covers every
        chunk (a document added meanwhile: run it again)."""

    @abstractmethod
    def get_chunks(self, tenant_id: str, collection: str, ids: list[int]) -> list[ChunkHit]:
        """The chunks with these ids in this collection, in no particular order."""


    # --- ingestions (a document indexed by a queue job) --------------------
    @abstractmethod
    def create_ingestion(self, tenant_id: str, new: NewIngestion, *,
                         now: float | None = None) -> tuple[Ingestion, bool]:
        """Store the ingestion, queued; with an idempotency key this tenant used
        before, the ingestion made then and False instead."""

    @abstractmethod
    def get_ingestion(self, tenant_id: str, ingestion_id: str, *,
                      with_text: bool = False) -> Ingestion | None: ...

    @abstractmethod
    def unsettled_ingestions(self, *, updated_before: float, after_id: str = "",
                             limit: int = 200) -> list[tuple[str, Ingestion]]:
        """(tenant, ingestion) of every tenant's queued or indexing ingestions
        not changed since `updated_before`, by id after `after_id`: for the
        sweeper, which queues those whose job was lost."""

    @abstractmethod
    def start_ingestion(self, tenant_id: str, ingestion_id: str, chunks_total: int, *,
                        now: float | None = None) -> None:
        """Mark it indexing with this many chunks to embed (unless it has ended)."""

    @abstractmethod
    def staged_vectors(self, tenant_id: str, ingestion_id: str,
                       model: EmbeddingModel) -> dict[int, StagedVector]:
        """By position: the vectors of `model` an earlier claim of the job embedded."""

    @abstractmethod
    def stage_vectors(self, tenant_id: str, ingestion_id: str, model: EmbeddingModel,
                      vectors: list[StagedVector], *, now: float | None = None) -> int:
        """Keep these vectors (a position staged before keeps its first) and
        set `chunks_done` to how many the ingestion has now, in one
        transaction; returns that count. None of it is searchable."""

    @abstractmethod
    def finish_ingestion(self, tenant_id: str, ingestion_id: str, chunks: list[NewChunk],
                         model: EmbeddingModel, *, now: float | None = None) -> Document:
        """In one transaction: write the document, its chunks, vectors and
        full-text entries (in place of `replace_document`, if it names one),
        mark the ingestion done and drop its staged vectors. An ingestion
        done already returns its document and writes nothing, so a job
        claimed twice never writes its chunks twice. DocumentNotFound if
        the ingestion (or the document it replaces) is gone."""

    @abstractmethod
    def fail_ingestion(self, tenant_id: str, ingestion_id: str, error: str, *,
                       now: float | None = None) -> None:
        """Mark it failed, with why (unless it is done)."""

    @abstractmethod
    def retry_ingestion(self, tenant_id: str, ingestion_id: str, *,
                        now: float | None = None) -> Ingestion | None:
        """A failed ingestion, or a done one whose document was deleted or given
        another text since, queued again with its generation raised; None when
        it is neither."""


def open_store(backends: Backends) -> KnowledgeStore:
    """The knowledge store in the store's database (its tables are
    made on first open, under the `memory` migrations)."""
    if backends.url.startswith("sqlite:///"):
        from homeo.memory.sqlite import SQLiteKnowledgeStore

        return SQLiteKnowledgeStore(backends.database, backends.store)
    from homeo.memory.postgres import PostgresKnowledgeStore

    return PostgresKnowledgeStore(backends.database, backends.store)
