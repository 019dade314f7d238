"""The knowledge verbs: add, replace and delete documents, and search a
collection by full text, by vectors, or both fused (hybrid).

Every call names its tenant. Store calls leave the event loop (in a thread)
unless the store says reads are safe inline; embedding runs on the model's
own thread."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from homeo.backends import Backends
from homeo.config import Settings
from homeo.llm.resolve import ModelCatalog
from homeo.memory.chunking import ChunkPolicy, chunk
from homeo.memory.embedder import Embedder, content_hash
from homeo.memory.extract import Extracted
from homeo.memory.fusion import HYBRID_K, HYBRID_TEXT_WEIGHT, reciprocal_rank_fusion
from homeo.memory.store import (
    ChunkHit,
    CollectionNotFound,
    Document,
    EmbeddingMismatch,
    KnowledgeError,
    KnowledgeStore,
    NewChunk,
    NewDocument,
    open_store,
)
from homeo.memory.vectors import VectorIndex, to_bytes

Mode = Literal["hybrid", "text", "vector"]
MODES: tuple[str, ...] = ("hybrid", "text", "vector")
COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_K = 100

# Words too common to say what a query is about; dropped from full-text
# queries (unless nothing else is left), so they neither rank nor slow it.
STOP_WORDS = frozenset(
    "a about above after again against all am an and any are as at be been before being below"
    " between both but by can could did do does doing don down during each few for from further"
    " had has have having he her here hers him his how i if in into is it its just me more most"
    " my no nor not now of off on once only or other our ours out over own same she should so"
    " some such t than that the their theirs them then there these they this those through to"
    " too under until up very was we were what when where which while who whom why will with"
    " won would you your yours".split())
_WORD = re.compile(r"\w+")
MAX_TERMS = 32

T = TypeVar("T")


def query_terms(query: str) -> list[str]:
    """The words of a query for full-text search: lower case, each once, stop
    words dropped unless the query is nothing but."""
    words = list(dict.fromkeys(word.lower() for word in _WORD.findall(query)))
    kept = [word for word in words if word not in STOP_WORDS] or words
    return kept[:MAX_TERMS]


def check_collection_name(name: str) -> None:
    if not COLLECTION_NAME.fullmatch(name):
        raise KnowledgeError(
            f"collection name {name!r} is not allowed: use 1 to 64 letters, digits, '.', '_'"
            " or '-', starting with a letter or digit")


@dataclass(frozen=True, slots=True)
class SearchHit:
    chunk: ChunkHit
    score: float  # hybrid: the fused score; text: the database's rank; vector: cosine
    text_rank: int | None  # 1-based place in the full-text list, if it was there
    vector_rank: int | None


class Knowledge:
    def __init__(self, store: KnowledgeStore, embedder: Embedder,
                 policy: ChunkPolicy = ChunkPolicy(), *, candidates: int = 50,
                 rrf_k: int = HYBRID_K, text_weight: float = HYBRID_TEXT_WEIGHT) -> None:
        """`candidates`: how many results each method gives hybrid search to fuse;
        `rrf_k`: reciprocal rank fusion's constant, `text_weight` the full-text
        list's weight against the vector list's 1 (homeo.memory.fusion)."""
        self.store = store
        self.embedder = embedder
        self.policy = policy
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.text_weight = text_weight
        self.index = VectorIndex()

    async def read(self, call: Callable[..., T], *args: Any) -> T:
        """A store read: inline when the store says that is safe, else in a thread."""
        if self.store.inline_reads:
            return call(*args)
        return await asyncio.to_thread(call, *args)

    async def add(self, tenant_id: str, collection: str, extracted: Extracted, *,
                  title: str | None = None, source: str | None = None,
                  replace: str | None = None) -> Document:
        """Chunk, embed (reusing vectors of text embedded before) and store a
        document; with `replace`, in place of that document."""
        check_collection_name(collection)
        if not extracted.text.strip():
            raise KnowledgeError("the document has no text to add")
        pieces = chunk(extracted.text, self.policy, markdown=extracted.markdown)
        model = await self.embedder.identity()
        hashes = [content_hash(piece.text) for piece in pieces]
        cached = await asyncio.to_thread(self.store.cached_vectors, tenant_id, model, hashes)
        missing = list(dict.fromkeys(h for h in hashes if h not in cached))
        if missing:
            texts = {h: piece.text for h, piece in zip(hashes, pieces, strict=True)}
            matrix = await self.embedder.embed([texts[h] for h in missing])
            cached.update((h, to_bytes(row)) for h, row in zip(missing, matrix, strict=True))
        chunks = [NewChunk(piece.position, piece.text, piece.start, piece.end, h, cached[h])
                  for piece, h in zip(pieces, hashes, strict=True)]
        new = NewDocument(title or extracted.title, source, extracted.format, extracted.text,
                          content_hash(extracted.text))
        return await asyncio.to_thread(self.store.put_document, tenant_id, collection, new,
                                       chunks, model, replace=replace)

    async def reembed(self, tenant_id: str, collection: str) -> int:
        """Embed every chunk of the collection again with the model the alias
        makes now, and switch the collection to it in one transaction. Returns
        how many chunks were embedded."""
        texts = await asyncio.to_thread(self.store.chunk_texts, tenant_id, collection)
        if texts is None:
            raise CollectionNotFound(f"no collection {collection!r}")
        model = await self.embedder.identity()
        ids = list(texts)
        matrix = await self.embedder.embed([texts[i] for i in ids]) if ids else None
        vectors = {} if matrix is None else {
            i: to_bytes(row) for i, row in zip(ids, matrix, strict=True)}
        await asyncio.to_thread(self.store.replace_vectors, tenant_id, collection, model, vectors)
        return len(vectors)

    async def delete(self, tenant_id: str, collection: str, document_id: str) -> bool:
        return await asyncio.to_thread(self.store.delete_document, tenant_id, collection,
                                       document_id)

    async def search(self, tenant_id: str, collection: str, query: str, k: int = 10,
                     mode: Mode = "hybrid") -> list[SearchHit]:
        """The `k` best chunks for `query`. CollectionNotFound if there is no such
        collection; EmbeddingMismatch if its vectors come from another model
        than the one the embedding alias makes now."""
        if mode not in MODES:
            raise KnowledgeError(f"unknown search mode {mode!r}: use hybrid, text or vector")
        if not query.strip():
            raise KnowledgeError("the query is empty: say what to search for")
        if not 1 <= k <= MAX_K:
            raise KnowledgeError(f"k must be between 1 and {MAX_K}, got {k}")
        version = await self.read(self.store.collection_version, tenant_id, collection)
        if version is None:
            raise CollectionNotFound(f"no collection {collection!r}")
        wanted = k if mode != "hybrid" else max(k, self.candidates)
        text: list[tuple[int, float]] = []
        vector: list[tuple[int, float]] = []
        terms = query_terms(query)
        if mode == "text":
            text = await self.read(self.store.text_search, tenant_id, collection, terms, wanted)
        elif mode == "vector":
            vector = await self._vector_search(tenant_id, collection, version, query, wanted)
        else:  # both at once: full text runs on a thread while the query is embedded
            text, vector = await asyncio.gather(
                asyncio.to_thread(self.store.text_search, tenant_id, collection, terms, wanted),
                self._vector_search(tenant_id, collection, version, query, wanted))
        return await self._hits(tenant_id, collection, mode, text, vector, k)

    async def _vector_search(self, tenant_id: str, collection: str, version: str, query: str,
                             k: int) -> list[tuple[int, float]]:
        loaded = self.index.cached(tenant_id, collection, version)
        if loaded is None:  # new to this process, or written since: read it again
            table = await asyncio.to_thread(self.store.vector_table, tenant_id, collection)
            loaded = await asyncio.to_thread(self.index.load, tenant_id, collection, table)
        if loaded is None or loaded.model is None or not len(loaded.ids):
            return []
        model = await self.embedder.identity()
        if (loaded.model, loaded.dimensions) != (model.name, model.dimensions):
            raise EmbeddingMismatch(
                f"collection {collection!r} holds vectors of {loaded.model}"
                f" ({loaded.dimensions} dimensions), but the embedding model now makes"
                f" {model.name} ({model.dimensions} dimensions): re-embed it"
                f" (`homeo memory reembed --collection {collection}`), or search with"
                " mode=text")
        return loaded.search(await self.embedder.embed_query(query), k)

    async def _hits(self, tenant_id: str, collection: str, mode: str,
                    text: list[tuple[int, float]], vector: list[tuple[int, float]],
                    k: int) -> list[SearchHit]:
        text_rank = {chunk_id: rank for rank, (chunk_id, _) in enumerate(text, start=1)}
        vector_rank = {chunk_id: rank for rank, (chunk_id, _) in enumerate(vector, start=1)}
        if mode == "hybrid":
            ranked = reciprocal_rank_fusion([[i for i, _ in text], [i for i, _ in vector]],
                                            self.rrf_k, (self.text_weight, 1.0))[:k]
        else:
            ranked = (text or vector)[:k]
        chunks = {hit.id: hit for hit in await self.read(
            self.store.get_chunks, tenant_id, collection, [i for i, _ in ranked])}
        # A chunk deleted between the ranking and this read is left out.
        return [SearchHit(chunks[i], score, text_rank.get(i), vector_rank.get(i))
                for i, score in ranked if i in chunks]


def open_knowledge(settings: Settings, backends: Backends, models: ModelCatalog) -> Knowledge:
    """Knowledge in the backends' database, embedded by the alias
    HOMEO_MEMORY_EMBEDDING_MODEL names (UnknownModel if it names none).
    No weights are loaded until the first embedding."""
    alias = settings.memory_embedding_model
    models.check(alias)
    embedder = Embedder(models.get(alias), alias, batch_size=settings.memory_embed_batch)
    policy = ChunkPolicy(settings.memory_chunk_chars, settings.memory_chunk_overlap)
    return Knowledge(open_store(backends), embedder, policy)
