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

Policy sits above storage (as in huey): `Queue` decides backoff and dead
letters, once for every backend; a `QueueStorage` (queue/sqlite.py,
postgres.py, redis.py) only stores jobs and leases, and checks that a write
comes from the lease's holder.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from homeo.db.dialect import clock

JobStatus = Literal["queued", "leased", "done", "dead"]
JOB_STATUSES: tuple[str, ...] = ("queued", "leased", "done", "dead")
LEASE_EXPIRED = "lease expired (worker died or stopped heartbeating)"
# How many repeatedly expired jobs `backlog` lists at most.
REPEAT_EXPIRIES_SHOWN = 20


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
    # Jobs not done or dead whose lease expired at least twice (each time the
    # worker holding them died or hung), and leased jobs whose lease expired
    # once: held again, so their holder's death would be their second. Most
    # expiries first.
    repeat_expiries: list[Job] = []


class QueueError(Exception):
    """The queue refused an operation."""


class QueueStorage(ABC):
    """Where jobs live. Every method that changes a leased job takes effect only
    while `worker_id` still holds the lease, and says when it did not."""

    @abstractmethod
    def enqueue(
        self,
        tenant_id: str,
        kind: str,
        payload: dict[str, Any],
        *,
        priority: int,
        delay: float,
        idempotency_key: str | None,
        max_attempts: int,
        now: float,
    ) -> tuple[Job, bool]:
        """Add a job. A repeated idempotency key (per tenant) returns the first
        job and False instead of adding another."""

    @abstractmethod
    def claim(self, worker_id: str, lease_seconds: float, now: float) -> Job | None:
        """Put expired leases back in line (counting each in `lease_expiries`),
        then lease the most urgent due job: highest priority, then the tenant
        served longest ago (whose last claim came first; one never served
        before all), then oldest `run_at`, then lowest id. None when nothing
        is due. Taking over a lapsed lease counts as serving its tenant."""

    @abstractmethod
    def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float, now: float) -> bool:
        """Extend the lease to `now + lease_seconds`."""

    @abstractmethod
    def complete(self, job_id: str, worker_id: str, now: float) -> bool:
        """Mark the job done."""

    def complete_and_claim(self, job_id: str, worker_id: str, claimer: str,
                           lease_seconds: float, now: float) -> tuple[bool, Job | None]:
        """`complete` then `claim` (for `claimer`), as one operation where the
        backend can (PostgreSQL: one statement, one commit; Redis: both scripts
        in one MULTI/EXEC). Returns what each would have returned."""
        return (self.complete(job_id, worker_id, now),
                self.claim(claimer, lease_seconds, now))

    def claim_batch(self, owners: Sequence[str], lease_seconds: float, now: float
                    ) -> list[Job]:
        """Up to one job per owner (in that order), the ones that many `claim`s
        one after another would lease, as one operation where the backend can
        (PostgreSQL: one statement, where the tenants' turns within a priority
        follow when each was last served before the batch). Fewer when fewer
        are due."""
        jobs = []
        for owner in owners:
            job = self.claim(owner, lease_seconds, now)
            if job is None:
                break
            jobs.append(job)
        return jobs

    def complete_batch(self, done: Sequence[tuple[str, str]], now: float) -> list[bool]:
        """`complete` of each (job id, owner), as one operation where the
        backend can; what each would have returned."""
        return [self.complete(job_id, owner, now) for job_id, owner in done]

    @abstractmethod
    def release(self, job_id: str, worker_id: str, now: float, run_at: float | None = None
                ) -> bool:
        """Put the job back in line at `run_at` (default `now`), taking back the
        claim's attempt."""

    @abstractmethod
    def expire_leases(self, worker_id: str, now: float) -> int:
        """Make every lease the worker process `worker_id` holds (lease owners
        `worker_id#n`) lapse at `now`, so the next claim puts those jobs back
        in line and counts each as an expiry. How many there were."""

    @abstractmethod
    def leased(self, job_id: str, worker_id: str) -> Job | None:
        """The job, while `worker_id` holds its lease."""

    @abstractmethod
    def requeue(
        self, job_id: str, worker_id: str, attempts: int, error: str, run_at: float, now: float
    ) -> Job | None:
        """Put the job back in line at `run_at`, if `worker_id` still holds the
        lease it claimed as attempt number `attempts`."""

    @abstractmethod
    def dead_letter(
        self, job_id: str, worker_id: str, attempts: int, error: str, now: float
    ) -> Job | None:
        """Mark the job dead, under the same condition as `requeue`."""

    @abstractmethod
    def get(self, tenant_id: str, job_id: str) -> Job | None: ...

    @abstractmethod
    def find(self, tenant_id: str, idempotency_key: str) -> Job | None: ...

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Jobs per status across all tenants, plus `lease_expiries` in total,
        read in one snapshot."""

    @abstractmethod
    def backlog(self, now: float) -> Backlog:
        """The queue's depth and ages, leases and expiries, at `now`."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the storage cannot be reached."""

    @abstractmethod
    def close(self) -> None: ...


class Queue:
    """The queue the engine uses: a storage plus the rules for retries and
    dead letters, the same on every backend."""

    def __init__(self, storage: QueueStorage, retry: RetryPolicy | None = None) -> None:
        self.storage = storage
        self.retry = retry or RetryPolicy()

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
        return self.storage.enqueue(
            tenant_id, kind, payload, priority=priority, delay=delay,
            idempotency_key=idempotency_key, max_attempts=max_attempts, now=clock(now),
        )

    def claim(self, worker_id: str, lease_seconds: float, *, now: float | None = None) -> Job | None:
        """Lease the most urgent job that is due: highest priority, then the
        tenant served longest ago (so a tenant with 200 queued jobs does not
        starve one with 5), then oldest `run_at`. Expired leases count as due.
        None when nothing is due."""
        return self.storage.claim(worker_id, lease_seconds, clock(now))

    def heartbeat(
        self, job_id: str, worker_id: str, lease_seconds: float, *, now: float | None = None
    ) -> bool:
        """Extend the lease. False means the lease is no longer this worker's."""
        return self.storage.heartbeat(job_id, worker_id, lease_seconds, clock(now))

    def complete(self, job_id: str, worker_id: str, *, now: float | None = None) -> bool:
        """Mark done. False means the lease was lost (someone else may run it)."""
        return self.storage.complete(job_id, worker_id, clock(now))

    def complete_and_claim(
        self, job_id: str, worker_id: str, claimer: str, lease_seconds: float, *,
        now: float | None = None,
    ) -> tuple[bool, Job | None]:
        """Mark a job done and lease the next one for `claimer`, in one round trip
        where the backend allows: what `complete` and then `claim` return."""
        return self.storage.complete_and_claim(job_id, worker_id, claimer, lease_seconds,
                                               clock(now))

    def claim_batch(self, owners: Sequence[str], lease_seconds: float, *,
                    now: float | None = None) -> list[Job]:
        """Lease up to one due job for each owner (distinct lease owners, as
        `claim`'s worker_id), in the order claims one after another would, in
        one round trip where the backend allows. Fewer when fewer are due."""
        if not owners or len(set(owners)) != len(owners):
            raise QueueError(f"claim_batch needs one or more distinct owners, not {owners!r}")
        return self.storage.claim_batch(list(owners), lease_seconds, clock(now))

    def complete_batch(self, done: Sequence[tuple[str, str]], *, now: float | None = None
                       ) -> list[bool]:
        """Mark each (job id, owner) done, in one round trip where the backend
        allows; False for each whose lease was lost."""
        if len({job_id for job_id, _ in done}) != len(done):
            raise QueueError("complete_batch names a job twice: complete each job once")
        return self.storage.complete_batch(list(done), clock(now)) if done else []

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
        now = clock(now)
        job = self.storage.leased(job_id, worker_id)
        if job is None:
            return None
        # The write below is fenced on (owner, attempts): if the lease changed
        # hands after this read, it changes nothing and returns None.
        if retry and job.attempts < job.max_attempts:
            wait = self.retry.delay(job.attempts) if delay is None else max(delay, 0.0)
            return self.storage.requeue(job_id, worker_id, job.attempts, error, now + wait, now)
        return self.storage.dead_letter(job_id, worker_id, job.attempts, error, now)

    def release(self, job_id: str, worker_id: str, *, delay: float = 0.0,
                now: float | None = None) -> bool:
        """Give the job back without counting the attempt, due again in `delay`
        seconds (graceful shutdown: at once; a paused tenant's job: later)."""
        now = clock(now)
        return self.storage.release(job_id, worker_id, now, now + max(delay, 0.0))

    def expire_leases(self, worker_id: str, *, now: float | None = None) -> int:
        """End now the leases of a worker process that died (the autonomic
        loop's `expire_leases`), rather than when they lapse on their own."""
        return self.storage.expire_leases(worker_id, clock(now))

    def get(self, tenant_id: str, job_id: str) -> Job | None:
        return self.storage.get(tenant_id, job_id)

    def find(self, tenant_id: str, idempotency_key: str) -> Job | None:
        return self.storage.find(tenant_id, idempotency_key)

    def stats(self) -> dict[str, int]:
        """Jobs per status across all tenants, plus `lease_expiries` in total."""
        return self.storage.stats()

    def backlog(self, now: float | None = None) -> Backlog:
        """The queue's depth and ages, leases and expiries, at `now`."""
        return self.storage.backlog(clock(now))

    def ping(self) -> None:
        """Raise if the queue's storage cannot be reached."""
        self.storage.ping()

    def close(self) -> None:
        self.storage.close()
