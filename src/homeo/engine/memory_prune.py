"""Agent memory pruning as a scheduled job of the queue, as engine/prune.py
schedules checkpoint retention: every `every` seconds each worker enqueues a
`memory_prune` job whose idempotency key names the period, so however many
workers there are, one job exists per period and one worker runs it
(homeo.memory.memories.Memories.prune: expired, decayed and long-superseded
memories are deleted, rows, vectors and full text)."""

from __future__ import annotations

from homeo.db.dialect import clock
from homeo.engine.prune import SYSTEM_TENANT
from homeo.queue.base import Queue

MEMORY_PRUNE_JOB = "memory_prune"


def schedule(queue: Queue, *, every: float, now: float | None = None) -> bool:
    """Queue this period's memory prune job unless a worker did already; whether this call did."""
    period = int(clock(now) // every)
    _, created = queue.enqueue(SYSTEM_TENANT, MEMORY_PRUNE_JOB, {},
                               idempotency_key=f"memory_prune:{int(every)}:{period}",
                               max_attempts=3)
    return created
