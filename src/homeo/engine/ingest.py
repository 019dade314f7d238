"""Durable ingestion: a document is accepted into the store, then indexed by
an `ingest` job of the queue (homeo.memory.ingest does the indexing).

`submit_ingestion` stores the ingestion and queues its job, in one
transaction when the store and the queue share a database (else the
ingestion first: a crash between the two is mended by submitting again,
which queues the job of an ingestion not done). Submitting the same text
from the same source to the same collection again returns the same
ingestion; one that failed, or whose document was deleted or changed since,
is queued again.

The worker runs `process_ingest_job`: it heartbeats the job's lease after
each batch, stops when the lease is lost, gives the job back between
batches when the worker is stopping, retries transient failures (the
model or the database) with the queue's backoff up to the job's attempts,
and marks the ingestion failed, with why, when it gives up or when the
document can never be indexed (no text, vectors of another model in the
collection, the document it replaces deleted).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from homeo.backends import Backends
from homeo.memory.chunking import ChunkPolicy
from homeo.memory.extract import Extracted
from homeo.memory.store import (
    Ingestion,
    KnowledgeError,
    KnowledgeStore,
    NewDocument,
    NewIngestion,
)
from homeo.queue.base import Job, Queue

if TYPE_CHECKING:  # numpy loads only when a worker indexes a document
    from homeo.memory.embedder import Embedder

INGEST_JOB = "ingest"
INGEST_ATTEMPTS = 5  # claims of one ingestion's job before it is given up


class IngestLeaseLost(Exception):
    """Another worker holds the ingestion job's lease now."""


class IngestInterrupted(Exception):
    """The worker is stopping: the job goes back to the queue, its staged
    vectors stay for the next claim."""


def submit_ingestion(backends: Backends, store: KnowledgeStore, tenant_id: str,
                     collection: str, extracted: Extracted, *, title: str | None = None,
                     source: str | None = None, replace: str | None = None,
                     delay: float = 0.0) -> tuple[Ingestion, bool]:
    """Accept a document for indexing; (the ingestion, whether it is new).
    With `delay`, its job is due that many seconds from now (for a caller
    that indexes it itself first: the job is the fallback)."""
    from homeo.memory.embedder import content_hash
    from homeo.memory.ingest import ingestion_key

    if not extracted.text.strip():
        raise KnowledgeError("the document has no text to add")
    text_hash = content_hash(extracted.text)
    new = NewIngestion(collection,
                       ingestion_key(tenant_id, collection, source, text_hash, replace),
                       NewDocument(title or extracted.title, source, extracted.format,
                                   extracted.text, text_hash), replace)
    with backends.atomic():
        ingestion, created = store.create_ingestion(tenant_id, new)
        if not created and ingestion.status in ("failed", "done"):
            ingestion = store.retry_ingestion(tenant_id, ingestion.id) or ingestion
        if ingestion.status != "done":
            enqueue_ingestion(backends.queue, tenant_id, ingestion, delay=delay)
    return ingestion, created


def enqueue_ingestion(queue: Queue, tenant_id: str, ingestion: Ingestion, *,
                      delay: float = 0.0) -> None:
    """Queue the ingestion's job (a no-op when it is queued already)."""
    queue.enqueue(tenant_id, INGEST_JOB, {"ingestion_id": ingestion.id}, delay=delay,
                  idempotency_key=ingestion_job_key(ingestion), max_attempts=INGEST_ATTEMPTS)


def ingestion_job_key(ingestion: Ingestion) -> str:
    """The idempotency key of the job of this submission of the ingestion."""
    return f"ingest:{ingestion.id}:{ingestion.generation}"


@dataclass
class LeaseKeeper:
    """Heartbeats a job's lease every third of it, from the batch loop."""

    queue: Queue
    job: Job
    owner: str
    lease_seconds: float
    clock: Callable[[], float] = time.monotonic
    stopping: Callable[[], bool] = lambda: False
    next_beat: float = 0.0

    async def __call__(self, done: int, total: int) -> None:
        del done, total
        if self.stopping():
            raise IngestInterrupted()
        now = self.clock()
        if now < self.next_beat:
            return
        self.next_beat = now + self.lease_seconds / 3
        if not await asyncio.to_thread(self.queue.heartbeat, self.job.id, self.owner,
                                       self.lease_seconds):
            raise IngestLeaseLost(f"job {self.job.id}")


async def process_ingest_job(queue: Queue, store: KnowledgeStore, embedder: Embedder,
                             policy: ChunkPolicy, job: Job, owner: str, *,
                             lease_seconds: float,
                             clock: Callable[[], float] = time.monotonic,
                             stopping: Callable[[], bool] = lambda: False) -> str:
    """Index the job's ingestion and settle the job; what happened, for the log."""
    from homeo.memory.ingest import index_ingestion

    ingestion_id = str(job.payload.get("ingestion_id", ""))
    ingestion = await asyncio.to_thread(store.get_ingestion, job.tenant_id, ingestion_id,
                                        with_text=True)
    if ingestion is None:
        await asyncio.to_thread(queue.fail, job.id, owner, f"no ingestion {ingestion_id!r}",
                                retry=False)
        return "missing"
    if ingestion.status in ("done", "failed"):
        await asyncio.to_thread(queue.complete, job.id, owner)
        return ingestion.status
    if job.exhausted:
        why = f"gave up after {job.attempts - 1} claims; last error: {job.last_error}"
        await asyncio.to_thread(store.fail_ingestion, job.tenant_id, ingestion.id, why)
        await asyncio.to_thread(queue.fail, job.id, owner, why, retry=False)
        return "failed"
    keeper = LeaseKeeper(queue, job, owner, lease_seconds, clock, stopping)
    try:
        await keeper(0, 0)
        await index_ingestion(store, embedder, policy, ingestion, job.tenant_id,
                              progress=keeper)
    except IngestLeaseLost:
        return "lease lost"
    except IngestInterrupted:
        await asyncio.to_thread(queue.release, job.id, owner)
        return "paused for shutdown"
    except KnowledgeError as refused:  # indexing it again would be refused again
        await asyncio.to_thread(store.fail_ingestion, job.tenant_id, ingestion.id,
                                str(refused))
        await asyncio.to_thread(queue.fail, job.id, owner, str(refused), retry=False)
        return "failed"
    except Exception as error:  # the model or the database: try again after backoff
        message = f"{type(error).__name__}: {error}"
        if job.attempts >= job.max_attempts:
            await asyncio.to_thread(store.fail_ingestion, job.tenant_id, ingestion.id,
                                    f"gave up after {job.attempts} claims; last error: {message}")
        await asyncio.to_thread(queue.fail, job.id, owner, message)
        return "retried"
    await asyncio.to_thread(queue.complete, job.id, owner)
    return "done"
