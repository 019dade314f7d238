"""The queue's state machine, explored by Hypothesis against a plain model.

Random sequences of enqueue, claim, heartbeat, complete, fail, release and
clock advances run against a real backend (a SQLite file, a PostgreSQL
schema, a Redis key prefix) and against a model: a `ModelJob` per job, kept in a few dicts. After
every step the two must agree on every job, and the queue's invariants hold.

Like every backend, the model returns expired leases to the queue only when
someone claims. When a run fails, Hypothesis shrinks it; against PostgreSQL
that can take a few minutes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from homeo.queue.base import JOB_STATUSES, Job, Queue, QueueStorage, RetryPolicy

WORKERS = ("w1", "w2", "w3")
TENANTS = ("acme", "globex")
BASE_SECONDS, CAP_SECONDS = 1.0, 8.0
# Every enqueue happens one tick after the last, so job ids (which begin with the
# millisecond) sort in creation order and ties in a claim break the same way
# each time Hypothesis replays an example. 1/64 s is exact in binary floating point.
TICK = 1 / 64
RETRY_SEED = 3
# tenant, priority, delay, idempotency key, max_attempts
JOB_SPEC = (
    st.sampled_from(TENANTS),
    st.integers(0, 3),
    st.sampled_from([0.0, 0.5, 3.0]),
    st.none() | st.sampled_from(["a", "b", "c"]),
    st.integers(1, 3),
)
SETTINGS = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class ModelJob:
    id: str
    tenant_id: str
    idempotency_key: str | None
    priority: int
    max_attempts: int
    run_at: float
    status: str = "queued"
    attempts: int = 0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    lease_expiries: int = 0

    def held_by(self, worker: str) -> bool:
        return self.status == "leased" and self.lease_owner == worker


@dataclass
class QueueUnderTest:
    queue: Queue
    retry: RetryPolicy
    empty: Callable[[], None]


@pytest.fixture(params=[
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
])
def queue_under_test(request: pytest.FixtureRequest, tmp_path) -> Iterator[QueueUnderTest]:
    """One queue per test; `empty()` clears it so every example starts afresh."""
    retry = RetryPolicy(BASE_SECONDS, CAP_SECONDS, random.Random(RETRY_SEED))
    storage: QueueStorage
    if request.param == "sqlite":
        from homeo.db.sqlite import SQLiteDatabase
        from homeo.queue.sqlite import SQLiteQueueStorage

        sqlite_db = SQLiteDatabase(tmp_path / "queue.db")

        def empty() -> None:
            with sqlite_db.write() as db:
                db.execute("DELETE FROM jobs")

        storage = SQLiteQueueStorage(sqlite_db)
    elif request.param == "postgres":
        from homeo.db.postgres import PostgresDatabase
        from homeo.queue.postgres import PostgresQueueStorage

        postgres_db = PostgresDatabase(request.getfixturevalue("postgres_url"))

        def empty() -> None:
            with postgres_db.transaction() as db:
                db.execute("DELETE FROM jobs")

        storage = PostgresQueueStorage(postgres_db)
    else:
        from homeo.queue.redis import RedisQueueStorage, connect

        client, prefix = connect(request.getfixturevalue("redis_url"))

        def empty() -> None:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)

        storage = RedisQueueStorage(client, prefix)
    queue = Queue(storage, retry)
    yield QueueUnderTest(queue, retry, empty)
    queue.close()


def machine_for(under_test: QueueUnderTest) -> type[RuleBasedStateMachine]:
    queue = under_test.queue

    class QueueMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            under_test.empty()
            under_test.retry.rng.seed(RETRY_SEED)  # replays must see the same backoffs
            self.now = 1000.0
            self.jobs: dict[str, ModelJob] = {}
            self.keys: dict[tuple[str, str], str] = {}
            self.finished: dict[str, str] = {}  # job id -> done or dead, for good
            self.claimers: dict[str, set[str]] = {}  # job id -> every worker that claimed it
            self.claims = 0
            self.served: dict[str, int] = {}  # tenant -> number of the claim that served it last

        # --- helpers ------------------------------------------------------
        def pick(self, data: st.DataObject) -> tuple[ModelJob, str]:
            """A leased job with its owner, or with a worker that held it before
            and lost the lease, or any job with any worker. All but the first
            must be refused: that is what keeps one job off two workers."""
            leased = sorted(job_id for job_id, job in self.jobs.items() if job.status == "leased")
            stale = sorted(
                (job_id, worker)
                for job_id, workers in self.claimers.items()
                for worker in workers
                if not self.jobs[job_id].held_by(worker)
            )
            choice = data.draw(st.integers(0, 5), label="choice")
            if leased and choice <= 2:
                job = self.jobs[leased[self.index(data, leased)]]
                assert job.lease_owner is not None
                worker = job.lease_owner
            elif stale and choice <= 4:
                job_id, worker = stale[self.index(data, stale)]
                job = self.jobs[job_id]
                event("probe by a worker that lost the lease")
            else:
                job = self.jobs[sorted(self.jobs)[self.index(data, self.jobs)]]
                worker = WORKERS[self.index(data, WORKERS)]
            note(f"{job.id} by {worker}")
            return job, worker

        @staticmethod
        def index(data: st.DataObject, items: Sized) -> int:
            # An index, not sampled_from(items): ids differ on every replay, and
            # the draw must not depend on anything but the choices made.
            return data.draw(st.integers(0, len(items) - 1))

        def finish(self, job: ModelJob, status: str) -> None:
            job.status, job.lease_owner, job.lease_expires_at = status, None, None
            self.finished[job.id] = status

        # --- rules ----------------------------------------------------------
        @initialize(jobs=st.lists(st.tuples(*JOB_SPEC), min_size=1, max_size=4))
        def some_jobs(self, jobs: list[tuple[str, int, float, str | None, int]]) -> None:
            for spec in jobs:
                self.add_job(*spec)

        @rule(spec=st.tuples(*JOB_SPEC))
        def enqueue(self, spec: tuple[str, int, float, str | None, int]) -> None:
            self.add_job(*spec)

        def add_job(
            self, tenant: str, priority: int, delay: float, key: str | None, max_attempts: int
        ) -> None:
            self.now += TICK
            job, created = queue.enqueue(
                tenant,
                "run",
                {"n": len(self.jobs)},
                priority=priority,
                delay=delay,
                idempotency_key=key,
                max_attempts=max_attempts,
                now=self.now,
            )
            first = self.keys.get((tenant, key)) if key is not None else None
            if first is not None:
                assert not created and job.id == first
                return
            assert created and job.id not in self.jobs and job.status == "queued"
            other = TENANTS[1 - TENANTS.index(tenant)]
            assert queue.get(other, job.id) is None
            self.jobs[job.id] = ModelJob(
                job.id, tenant, key, priority, max_attempts, run_at=self.now + delay
            )
            if key is not None:
                self.keys[(tenant, key)] = job.id

        @rule(worker=st.sampled_from(WORKERS), lease=st.sampled_from([1.0, 2.0, 10.0]))
        def claim(self, worker: str, lease: float) -> None:
            self.check_claim(queue.claim(worker, lease, now=self.now), worker, lease)

        def due_after_expiries(self) -> list[ModelJob]:
            """Expired leases go back in line first (each counted); then what is due."""
            for job in self.jobs.values():
                expires = job.lease_expires_at
                if job.status == "leased" and expires is not None and expires <= self.now:
                    job.status, job.lease_owner, job.lease_expires_at = "queued", None, None
                    job.lease_expiries += 1
            return [j for j in self.jobs.values() if j.status == "queued" and j.run_at <= self.now]

        def check_claim(self, claimed: Job | None, worker: str, lease: float) -> None:
            """What the model says `worker`'s claim at `self.now` must lease."""
            due = self.due_after_expiries()
            expected = min(
                due, key=lambda j: (-j.priority, self.served.get(j.tenant_id, 0), j.run_at, j.id),
                default=None)
            if expected is None:
                assert claimed is None
                return
            assert claimed is not None and claimed.id == expected.id
            self.lease(expected, claimed, worker, lease)

        @rule(size=st.integers(1, len(WORKERS)), lease=st.sampled_from([1.0, 2.0, 10.0]))
        def claim_batch(self, size: int, lease: float) -> None:
            """A batch leases as many due jobs as it has owners (or as are due),
            each once, none of a lower priority than one it leaves; its order
            within a priority is checked by the contract tests."""
            owners = [f"{worker}#batch" for worker in WORKERS[:size]]
            due = self.due_after_expiries()
            batch = queue.claim_batch(owners, lease, now=self.now)
            assert len(batch) == min(size, len(due))
            assert len({job.id for job in batch}) == len(batch)
            due_ids = {job.id for job in due}
            assert all(job.id in due_ids for job in batch)
            left = [j.priority for j in due if j.id not in {job.id for job in batch}]
            assert all(job.priority >= max(left, default=job.priority) for job in batch)
            for claimed, owner in zip(batch, owners, strict=False):
                self.lease(self.jobs[claimed.id], claimed, owner, lease)
            if len(batch) > 1:
                event("batch claim of several jobs")

        def lease(self, expected: ModelJob, claimed: Job, worker: str, lease: float) -> None:
            assert claimed.lease_owner == worker
            expected.status, expected.lease_owner = "leased", worker
            expected.lease_expires_at = self.now + lease
            expected.attempts += 1
            self.claims += 1  # the tenant served last
            self.served[expected.tenant_id] = self.claims
            self.claimers.setdefault(expected.id, set()).add(worker)
            assert claimed.attempts == expected.attempts
            assert claimed.lease_expiries == expected.lease_expiries
            assert claimed.lease_expires_at == expected.lease_expires_at
            assert claimed.exhausted == (expected.attempts > expected.max_attempts)
            if claimed.lease_expiries:
                event("claim after a lease expired")
            if claimed.exhausted:
                event("claim past the last attempt")

        @precondition(lambda self: self.jobs)
        @rule(
            data=st.data(),
            action=st.sampled_from(["heartbeat", "complete", "complete_and_claim", "retry",
                                    "give_up", "release", "complete_batch"]),
        )
        def worker_acts(self, data: st.DataObject, action: str) -> None:
            """One rule for what a worker does with a job, so that swarm testing
            (which switches whole rules off per example) still leaves claims
            plenty of room."""
            job, worker = self.pick(data)
            if action == "heartbeat":
                self.heartbeat(job, worker)
            elif action == "complete":
                self.complete(job, worker)
            elif action == "complete_and_claim":
                claimer = WORKERS[self.index(data, WORKERS)]
                done, claimed = queue.complete_and_claim(job.id, worker, claimer, 2.0,
                                                         now=self.now)
                assert done == job.held_by(worker)
                if done:
                    self.finish(job, "done")
                self.check_claim(claimed, claimer, 2.0)
            elif action == "release":
                self.release(job, worker)
            elif action == "complete_batch":
                picks = {job.id: (job, worker)}
                for _ in range(data.draw(st.integers(0, 2), label="more")):
                    other, other_worker = self.pick(data)
                    picks.setdefault(other.id, (other, other_worker))
                chosen = list(picks.values())
                done = queue.complete_batch([(j.id, w) for j, w in chosen], now=self.now)
                assert done == [j.held_by(w) for j, w in chosen]
                for (j, _), completed in zip(chosen, done, strict=True):
                    if completed:
                        self.finish(j, "done")
            else:
                self.fail(job, worker, retry=action == "retry")

        def heartbeat(self, job: ModelJob, worker: str) -> None:
            extended = queue.heartbeat(job.id, worker, 2.0, now=self.now)
            assert extended == job.held_by(worker)
            if extended:
                job.lease_expires_at = self.now + 2.0

        def complete(self, job: ModelJob, worker: str) -> None:
            done = queue.complete(job.id, worker, now=self.now)
            assert done == job.held_by(worker)
            if done:
                self.finish(job, "done")

        def fail(self, job: ModelJob, worker: str, *, retry: bool) -> None:
            failed = queue.fail(job.id, worker, "boom", retry=retry, now=self.now)
            if not job.held_by(worker):
                assert failed is None
                return
            assert failed is not None and failed.last_error == "boom"
            if retry and job.attempts < job.max_attempts:
                event("fail: retried")
                ceiling = min(CAP_SECONDS, BASE_SECONDS * 2 ** (job.attempts - 1))
                assert failed.status == "queued"
                assert self.now <= failed.run_at <= self.now + ceiling
                job.status, job.lease_owner, job.lease_expires_at = "queued", None, None
                job.run_at = failed.run_at
            else:
                event("fail: dead")
                assert failed.status == "dead"
                job.run_at = self.now
                self.finish(job, "dead")

        def release(self, job: ModelJob, worker: str) -> None:
            released = queue.release(job.id, worker, now=self.now)
            assert released == job.held_by(worker)
            if released:
                job.status, job.lease_owner, job.lease_expires_at = "queued", None, None
                job.attempts -= 1
                job.run_at = self.now

        @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 12.0]))
        def advance_clock(self, seconds: float) -> None:
            self.now += seconds

        # --- invariants -----------------------------------------------------
        @invariant()
        def every_job_matches_the_model(self) -> None:
            for model in self.jobs.values():
                job = queue.get(model.tenant_id, model.id)
                assert job is not None
                assert (
                    job.status,
                    job.attempts,
                    job.lease_owner,
                    job.lease_expires_at,
                    job.lease_expiries,
                    job.run_at,
                    job.priority,
                ) == (
                    model.status,
                    model.attempts,
                    model.lease_owner,
                    model.lease_expires_at,
                    model.lease_expiries,
                    model.run_at,
                    model.priority,
                ), model.id
                # No job is leased by two workers: a leased row names exactly one
                # owner (the model's), and every other worker that once held it
                # is refused by heartbeat, complete, fail and release (see pick).
                assert (job.status == "leased") == (job.lease_owner is not None)
                # Only lease expiries can take a job past its last attempt.
                assert job.attempts <= job.max_attempts + job.lease_expiries
                if model.id in self.finished:
                    assert job.status == self.finished[model.id]

        @invariant()
        def status_counts_match_the_model(self) -> None:
            expected = dict.fromkeys(JOB_STATUSES, 0)
            for job in self.jobs.values():
                expected[job.status] += 1
            expected["lease_expiries"] = sum(job.lease_expiries for job in self.jobs.values())
            assert queue.stats() == expected

        @invariant()
        def an_idempotency_key_names_one_job(self) -> None:
            for (tenant, key), job_id in self.keys.items():
                found = queue.find(tenant, key)
                assert found is not None and found.id == job_id

    return QueueMachine


# Shrinking a failure may take Hypothesis up to its five-minute limit; leave room
# to print the shrunk example rather than a timeout.
@pytest.mark.timeout(600)
def test_queue_agrees_with_its_model(queue_under_test: QueueUnderTest) -> None:
    run_state_machine_as_test(machine_for(queue_under_test), settings=SETTINGS)
