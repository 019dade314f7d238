"""Retention: finished runs' per-step checkpoints are removed after a while.

A run's steps keep the checkpoint each produced (engine/history.py), which is
what lets anyone read the state at a step or fork from it. Once a run has been
finished for longer than the retention (HOMEO_CHECKPOINT_RETENTION), those
checkpoints go; the steps' inputs and outputs and the run's final state stay.

Workers schedule it: every `every` seconds each worker enqueues a `prune` job
whose idempotency key names the period, so however many workers there are,
one job exists per period and one worker runs it.
"""

from __future__ import annotations

from homeo.db.dialect import clock
from homeo.queue.base import Queue
from homeo.store.base import Store
from homeo.store.models import PruneResult

PRUNE_JOB = "prune"
# Jobs that belong to no tenant (pruning is over all of them) are queued under this one.
SYSTEM_TENANT = "_homeo"


def prune(
    store: Store, *, older_than: float, dry_run: bool = False, now: float | None = None
) -> PruneResult:
    """Remove the per-step checkpoints of runs finished more than `older_than`
    seconds ago (with `dry_run`, only count them)."""
    now = clock(now)
    return store.prune_checkpoints(finished_before=now - older_than, dry_run=dry_run, now=now)


def schedule(queue: Queue, *, older_than: float, every: float, now: float | None = None) -> bool:
    """Queue this period's prune job unless a worker did already; whether this call did."""
    period = int(clock(now) // every)
    _, created = queue.enqueue(
        SYSTEM_TENANT, PRUNE_JOB, {"older_than": older_than},
        idempotency_key=f"prune:{int(every)}:{period}", max_attempts=3,
    )
    return created


def describe(result: PruneResult, *, dry_run: bool = False) -> str:
    verb = "would remove" if dry_run else "removed"
    runs = "run" if result.runs == 1 else "runs"
    return (f"{verb} {result.checkpoints} step checkpoints ({result.bytes:,} bytes of JSON)"
            f" of {result.runs} finished {runs}")
