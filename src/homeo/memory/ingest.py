"""Indexing an accepted document in batches, durably (the work of an
`ingest` queue job, homeo.engine.ingest).

The document's text is stored first (an `Ingestion`). The job chunks it,
embeds the chunks a batch at a time and keeps each batch's vectors beside
the ingestion ("staged", read by no search) with its progress; a job
claimed again after its worker died embeds only what is not staged yet.
The last step writes the document, every chunk, vector and full-text entry
and marks the ingestion done in one transaction: a search sees all of the
document or none of it, and a second claim finds it done and writes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

from homeo.memory.chunking import ChunkPolicy, chunk
from homeo.memory.embedder import Embedder, content_hash
from homeo.memory.store import (
    Document,
    Ingestion,
    KnowledgeError,
    KnowledgeStore,
    NewChunk,
    StagedVector,
)
from homeo.memory.vectors import to_bytes

# Called after each batch with (chunks done, chunks in all); it may raise to
# stop the work (a lost lease).
Progress = Callable[[int, int], Awaitable[None]]


def ingestion_key(tenant_id: str, collection: str, source: str | None, text_hash: str,
                  replace: str | None = None) -> str:
    """The idempotency key of an upload: the same text from the same source
    into the same collection (in place of the same document, if any) is the
    same ingestion."""
    parts = (tenant_id, collection, source or "", text_hash, replace or "")
    return "sha256:" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()


async def index_ingestion(store: KnowledgeStore, embedder: Embedder, policy: ChunkPolicy,
                          ingestion: Ingestion, tenant_id: str, *,
                          progress: Progress | None = None) -> Document:
    """Chunk, embed (what no earlier claim staged, and no chunk of the tenant
    has already) and index the ingestion's text; its document."""
    if ingestion.text is None:
        raise ValueError("index_ingestion needs the ingestion with its text")
    if not ingestion.text.strip():
        raise KnowledgeError("the document has no text to add")
    pieces = chunk(ingestion.text, policy, markdown=ingestion.markdown)
    hashes = [content_hash(piece.text) for piece in pieces]
    model = await embedder.identity()
    await asyncio.to_thread(store.start_ingestion, tenant_id, ingestion.id, len(pieces))
    staged = await asyncio.to_thread(store.staged_vectors, tenant_id, ingestion.id, model)
    vectors = {position: found.vector for position, found in staged.items()
               if found.content_hash == hashes[position]} if staged else {}
    unstaged = [position for position in range(len(pieces)) if position not in vectors]
    cached = await asyncio.to_thread(store.cached_vectors, tenant_id, model,
                                     [hashes[position] for position in unstaged])
    reused = [StagedVector(position, hashes[position], cached[hashes[position]])
              for position in unstaged if hashes[position] in cached]
    done = len(vectors)
    if reused or not unstaged:
        done = await asyncio.to_thread(store.stage_vectors, tenant_id, ingestion.id, model,
                                       reused)
        vectors.update((found.position, found.vector) for found in reused)
    if progress is not None:
        await progress(done, len(pieces))
    todo = [position for position in unstaged if position not in vectors]
    for start in range(0, len(todo), embedder.batch_size):
        batch = todo[start:start + embedder.batch_size]
        matrix = await embedder.embed([pieces[position].text for position in batch])
        made = [StagedVector(position, hashes[position], to_bytes(row))
                for position, row in zip(batch, matrix, strict=True)]
        done = await asyncio.to_thread(store.stage_vectors, tenant_id, ingestion.id, model,
                                       made)
        vectors.update((found.position, found.vector) for found in made)
        if progress is not None:
            await progress(done, len(pieces))
    chunks = [NewChunk(piece.position, piece.text, piece.start, piece.end, hashes[position],
                       vectors[position]) for position, piece in enumerate(pieces)]
    return await asyncio.to_thread(store.finish_ingestion, tenant_id, ingestion.id, chunks,
                                   model)
