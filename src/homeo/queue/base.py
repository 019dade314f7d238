"""The queue interface. Every backend passes tests/queue/test_contract.py.

A job moves through these states:

    queued --claim--> leased --complete--> done
      ^                 |  \\--fail(retry, attempts left)--> queued (after backoff)
      |                 |   \\-fail(no retry or no attempts left)--> dead
      +--lease expired--+

A claim increments `attempts`. A lease that expires (its worker died or hung)
puts the job back in line and counts in `lease_expiries`; the next claimer sees
`job.exhausted` when it has now been tried more than `max_attempts` times and
must dead-letter it, since only the claimer knows what the job was for.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

JobStatus = Literal["queued", "leased", "done", "dead"]
JOB_STATUSES: tuple[str, ...] = ("queued", "leased", "done", "dead")


class Job(BaseModel):
    id: str
    tenant_id: str
    kind: str
    payload: dict[str, Any]
    priority: int
    status: JobStatus
    attempts: int
    max_attempts: int
    run_at: float
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    idempotency_key: str | None = None
    last_error: str | None = None
    lease_expiries: int = 0
    created_at: float
    updated_at: float

    @property
    def exhausted(self) -> bool:
        """True when this claim is past the last allowed attempt."""
        return self.attempts > self.max_attempts


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter: wait uniform(0, min(cap, base * 2^(n-1)))."""

    base_seconds: float = 1.0
    cap_seconds: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempts: int) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))
        return self.rng.uniform(0, ceiling)


class Backlog(BaseModel):
    """The queue at one moment, across every tenant (`Queue.backlog`): what the
    autonomic loop watches."""

    due: int = 0  # queued jobs whose run_at has come
    oldest_due_at: float | None = None  # run_at of the longest-waiting due job
    leased: int = 0
    lapsed: int = 0  # leased jobs whose lease has expired, not yet taken back
    dead: int = 0
    lease_expiries: int = 0  # in total, over every job
    due_by_tenant: dict[str, int] = {}
    # Leased jobs per worker process (the lease owner up to its "#").
    leases_by_worker: dict[str, int] = {}
    # Jobs not done or dead whose lease expired at least twice: each time the
    # worker holding them died or hung.
    repeat_expiries: list[Job] = []


class QueueError(Exception):
    """The queue refused an operation."""


class Queue(ABC):
    @abstractmethod
    def enqueue(
        self,
        tenant_id: str,
        kind: str,
        payload: dict[str, Any],
        *,
        priority: int = 0,
        delay: float = 0.0,
        idempotency_key: str | None = None,
        max_attempts: int = 3,
        now: float | None = None,
    ) -> tuple[Job, bool]:
        """Add a job. A repeated idempotency key (per tenant) returns the first
        job and False instead of adding another."""

    @abstractmethod
    def claim(self, worker_id: str, lease_seconds: float, *, now: float | None = None) -> Job | None:
        """Lease the most urgent job that is due: highest priority, then oldest
        `run_at`. Expired leases count as due. None when nothing is due."""

    @abstractmethod
    def heartbeat(
        self, job_id: str, worker_id: str, lease_seconds: float, *, now: float | None = None
    ) -> bool:
        """Extend the lease. False means the lease is no longer this worker's."""

    @abstractmethod
    def complete(self, job_id: str, worker_id: str, *, now: float | None = None) -> bool:
        """Mark done. False means the lease was lost (someone else may run it)."""

    @abstractmethod
    def fail(
        self,
        job_id: str,
        worker_id: str,
        error: str,
        *,
        retry: bool = True,
        delay: float | None = None,
        now: float | None = None,
    ) -> Job | None:
        """Requeue after backoff (or after `delay` seconds, when the caller's own
        policy chose it) if `retry` and attempts remain, else dead-letter.
        None when the lease was lost."""

    @abstractmethod
    def release(self, job_id: str, worker_id: str, *, now: float | None = None) -> bool:
        """Give the job back at once without counting the attempt (graceful shutdown)."""

    @abstractmethod
    def get(self, tenant_id: str, job_id: str) -> Job | None: ...

    @abstractmethod
    def find(self, tenant_id: str, idempotency_key: str) -> Job | None: ...

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Jobs per status across all tenants, plus `lease_expiries` in total."""

    @abstractmethod
    def backlog(self, now: float | None = None) -> Backlog:
        """The queue's depth and ages, leases and expiries, at `now`."""

    @abstractmethod
    def close(self) -> None: ...
