"""Durable ingestion on SQLite and PostgreSQL with the hashing embedder: a
queued document indexed by a real worker in batches, an interrupted one
resumed without embedding its staged chunks again or writing any chunk
twice, idempotent submission, and failures recorded with why."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine.ingest import INGEST_ATTEMPTS, INGEST_JOB, process_ingest_job, submit_ingestion
from homeo.engine.sweep import Sweeper
from homeo.llm.base import Embeddings
from homeo.memory.chunking import chunk
from homeo.memory.extract import from_text
from homeo.memory.ingest import index_ingestion
from homeo.memory.store import EmbeddingModel, NewChunk, NewDocument, NewIngestion
from homeo.runtime import Runtime

sys.path.insert(0, str(Path(__file__).parent.parent / "support"))
from hashembed import HashingEmbedder  # noqa: E402

TENANT = "default"
BATCH = 3


class CountingEmbedder(HashingEmbedder):
    """The hashing model, keeping every text it was asked to embed."""

    def __init__(self) -> None:
        self.embedded: list[str] = []

    async def embed(self, texts: list[str]) -> Embeddings:
        self.embedded.extend(texts)
        return await super().embed(texts)


class Crash(Exception):
    """Stands for the worker dying between two batches."""


@pytest.fixture
def runtime(tmp_path: Path, backend_url: str) -> Iterator[Runtime]:
    settings = Settings(data_dir=tmp_path, database_url=backend_url, lease_seconds=5,
                        poll_seconds=0.01, retry_base_seconds=0.0, retry_max_seconds=0.0,
                        memory_embed_batch=BATCH, memory_chunk_chars=100, memory_chunk_overlap=0)
    opened = Runtime.open(settings)
    opened.models.add("embedding", CountingEmbedder())
    yield opened
    asyncio.run(opened.aclose())


def book(paragraphs: int = 20, topic: str = "lighthouse") -> str:
    return "\n\n".join(f"Paragraph {n} tells of the {topic} keeper's log, entry number {n},"
                       f" written at dusk by the {topic} lamp." for n in range(paragraphs))


def embedded(runtime: Runtime) -> list[str]:
    model = runtime.knowledge().embedder.model
    assert isinstance(model, CountingEmbedder)
    return [text for text in model.embedded if text != "dimension probe"]


def test_a_queued_document_is_indexed_by_the_worker(runtime: Runtime) -> None:
    knowledge = runtime.knowledge()
    text = book()
    ingestion, created = submit_ingestion(runtime.backends, knowledge.store, TENANT, "logs",
                                          from_text(text, "text"), source="log.txt")
    assert created and ingestion.status == "queued"
    job = runtime.backends.queue.find(TENANT, f"ingest:{ingestion.id}:0")
    assert job.kind == INGEST_JOB and job.payload == {"ingestion_id": ingestion.id}
    assert knowledge.store.get_collection(TENANT, "logs") is None  # accepted, not searchable
    assert asyncio.run(runtime.worker(1).run_until_idle()) == 1
    done = knowledge.store.get_ingestion(TENANT, ingestion.id)
    expected = len(chunk(text, knowledge.policy))
    assert expected > 3 * BATCH
    assert (done.status, done.chunks_done, done.chunks_total) == ("done", expected, expected)
    document = knowledge.store.get_document(TENANT, "logs", done.document_id)
    assert document.chunks == expected and document.text == text
    hits = asyncio.run(knowledge.search(TENANT, "logs", "entry number 7", 3, "text"))
    assert hits[0].chunk.document_id == document.id
    assert runtime.backends.queue.stats().get("done", 0) == 1


def test_an_interrupted_ingestion_resumes_where_it_stopped(runtime: Runtime) -> None:
    knowledge = runtime.knowledge()
    text = book(30)
    ingestion, _ = submit_ingestion(runtime.backends, knowledge.store, TENANT, "logs",
                                    from_text(text, "text"))
    seen: list[tuple[int, int]] = []

    async def die_after_three_batches(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) == 4:  # the call before any batch, then three batches
            raise Crash()

    with_text = knowledge.store.get_ingestion(TENANT, ingestion.id, with_text=True)
    with pytest.raises(Crash):
        asyncio.run(index_ingestion(knowledge.store, knowledge.embedder, knowledge.policy,
                                    with_text, TENANT, progress=die_after_three_batches))
    total = len(chunk(text, knowledge.policy))
    assert seen == [(0, total), (BATCH, total), (2 * BATCH, total), (3 * BATCH, total)]
    halfway = knowledge.store.get_ingestion(TENANT, ingestion.id)
    assert (halfway.status, halfway.chunks_done, halfway.chunks_total) == (
        "indexing", 3 * BATCH, total)
    assert knowledge.store.get_collection(TENANT, "logs") is None  # none of it searchable
    assert asyncio.run(runtime.worker(1).run_until_idle()) == 1
    done = knowledge.store.get_ingestion(TENANT, ingestion.id)
    assert done.status == "done"
    [collection] = knowledge.store.list_collections(TENANT)
    assert (collection.documents, collection.chunks) == (1, total)
    positions = [hit.position for hit in knowledge.store.get_chunks(
        TENANT, "logs", knowledge.store.vector_table(TENANT, "logs").ids)]
    assert sorted(positions) == list(range(total))
    assert len(embedded(runtime)) == total  # the staged batches were not embedded again


def test_submitting_the_same_document_again_is_the_same_ingestion(runtime: Runtime) -> None:
    knowledge, queue = runtime.knowledge(), runtime.backends.queue
    text = from_text(book(), "text")
    first, created = submit_ingestion(runtime.backends, knowledge.store, TENANT, "logs", text,
                                      source="log.txt")
    again, created_again = submit_ingestion(runtime.backends, knowledge.store, TENANT, "logs",
                                            text, source="log.txt")
    assert created and not created_again and again.id == first.id
    assert queue.stats().get("queued", 0) == 1
    elsewhere, created = submit_ingestion(runtime.backends, knowledge.store, TENANT, "other",
                                          text, source="log.txt")
    assert created and elsewhere.id != first.id
    assert asyncio.run(runtime.worker(1).run_until_idle()) == 2
    done, _ = submit_ingestion(runtime.backends, knowledge.store, TENANT, "logs", text,
                               source="log.txt")
    assert done.status == "done" and done.id == first.id
    assert queue.stats().get("queued", 0) == 0  # nothing left to do: no job
    assert knowledge.store.get_collection(TENANT, "logs").documents == 1


def test_a_document_that_cannot_be_indexed_fails_with_why_and_can_be_retried(
        runtime: Runtime) -> None:
    knowledge, queue = runtime.knowledge(), runtime.backends.queue
    other = EmbeddingModel("another-model", 4)
    knowledge.store.put_document(TENANT, "logs", NewDocument(None, None, "text", "x", "h"),
                                 [NewChunk(0, "x", 0, 1, "h", b"\0" * 16)], other)
    text = from_text(book(), "text")
    ingestion, _ = submit_ingestion(runtime.backends, knowledge.store, TENANT, "logs", text)
    assert asyncio.run(runtime.worker(1).run_until_idle()) == 1
    failed = knowledge.store.get_ingestion(TENANT, ingestion.id)
    assert failed.status == "failed" and "reembed" in failed.error
    assert queue.stats().get("dead", 0) == 1  # refused for good: not retried
    assert knowledge.store.get_collection(TENANT, "logs").documents == 1
    (blocking,) = knowledge.store.list_documents(TENANT, "logs")
    assert knowledge.store.delete_document(TENANT, "logs", blocking.id)
    again, created = submit_ingestion(runtime.backends, knowledge.store, TENANT, "logs", text)
    assert not created and again.id == ingestion.id and again.generation == 1
    assert asyncio.run(runtime.worker(1).run_until_idle()) == 1
    assert knowledge.store.get_ingestion(TENANT, ingestion.id).status == "done"


def test_a_job_claimed_past_its_attempts_gives_the_ingestion_up(runtime: Runtime) -> None:
    knowledge, queue = runtime.knowledge(), runtime.backends.queue
    ingestion, _ = submit_ingestion(runtime.backends, knowledge.store, TENANT, "logs",
                                    from_text(book(), "text"))
    job = None
    for claim in range(INGEST_ATTEMPTS + 1):  # each lease lapses: its worker died
        job = queue.claim(f"w{claim}", 1.0, now=1e12 + 10 * claim)
    assert job is not None and job.exhausted
    outcome = asyncio.run(process_ingest_job(
        queue, knowledge.store, knowledge.embedder, knowledge.policy, job, job.lease_owner,
        lease_seconds=1.0))
    assert outcome == "failed"
    failed = knowledge.store.get_ingestion(TENANT, ingestion.id)
    assert failed.status == "failed" and f"after {INGEST_ATTEMPTS} claims" in failed.error
    assert queue.stats().get("dead", 0) == 1



def test_deleting_a_collection_drops_its_ingestions_and_a_queued_one_ends(
        runtime: Runtime) -> None:
    knowledge = runtime.knowledge()
    first, _ = submit_ingestion(runtime.backends, knowledge.store, TENANT, "logs",
                                from_text(book(), "text"), source="log.txt")
    assert asyncio.run(runtime.worker(1).run_until_idle()) == 1  # the collection exists now
    queued, _ = submit_ingestion(runtime.backends, knowledge.store, TENANT, "logs",
                                 from_text(book(topic="harbour"), "text"), source="h.txt")
    kept, _ = submit_ingestion(runtime.backends, knowledge.store, TENANT, "other",
                               from_text(book(topic="mill"), "text"), source="m.txt")
    assert knowledge.store.delete_collection(TENANT, "logs")
    assert knowledge.store.get_ingestion(TENANT, first.id) is None
    assert knowledge.store.get_ingestion(TENANT, queued.id) is None
    assert asyncio.run(runtime.worker(1).run_until_idle()) == 2
    assert knowledge.store.get_collection(TENANT, "logs") is None  # not brought back
    assert knowledge.store.get_ingestion(TENANT, kept.id).status == "done"


def test_the_sweeper_queues_an_ingestion_whose_job_was_lost(runtime: Runtime) -> None:
    # As a process that died between storing the ingestion and queueing its job
    # leaves it where the queue is another system (Redis).
    knowledge = runtime.knowledge()
    text = book()
    stranded, _ = knowledge.store.create_ingestion(TENANT, NewIngestion(
        "logs", "lost-key", NewDocument(None, "log.txt", "text", text, "h")), now=1000.0)
    sweeper = Sweeper(runtime.backends, grace_seconds=30.0, knowledge=knowledge.store)
    assert sweeper.sweep_ingestions(now=1010.0) == []  # may be mid-submission
    assert sweeper.sweep_ingestions(now=2000.0) == [stranded.id]
    assert sweeper.sweep_ingestions(now=2000.0) == []  # queued once
    assert asyncio.run(runtime.worker(1).run_until_idle()) == 1
    done = knowledge.store.get_ingestion(TENANT, stranded.id)
    assert done.status == "done" and done.chunks_done == len(chunk(text, knowledge.policy))


def test_the_sweeper_fails_an_ingestion_whose_job_ended_without_it(runtime: Runtime) -> None:
    knowledge, queue = runtime.knowledge(), runtime.backends.queue
    ingestion, _ = submit_ingestion(runtime.backends, knowledge.store, TENANT, "logs",
                                    from_text(book(), "text"))
    job = queue.claim("w", 30.0)
    queue.fail(job.id, "w", "no embedding model here", retry=False)
    sweeper = Sweeper(runtime.backends, grace_seconds=0.0, knowledge=knowledge.store)
    assert sweeper.sweep_ingestions(now=9e9) == [ingestion.id]
    failed = knowledge.store.get_ingestion(TENANT, ingestion.id)
    assert failed.status == "failed" and "its job ended (dead)" in failed.error
    assert "no embedding model here" in failed.error
