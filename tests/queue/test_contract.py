"""The queue contract: every backend must pass every test here."""

from __future__ import annotations

import random

from homeo.backends import Backends
from homeo.queue.base import RetryPolicy


def test_enqueue_claim_complete(backends: Backends) -> None:
    queue = backends.queue
    job, created = queue.enqueue("acme", "run", {"run_id": "r1"}, now=10.0)
    assert created and job.status == "queued" and job.attempts == 0
    claimed = queue.claim("w1", 30, now=10.0)
    assert claimed.id == job.id and claimed.status == "leased" and claimed.attempts == 1
    assert claimed.lease_owner == "w1" and claimed.lease_expires_at == 40.0
    assert claimed.payload == {"run_id": "r1"}
    assert queue.claim("w2", 30, now=11.0) is None
    assert queue.complete(job.id, "w1", now=12.0)
    assert queue.get("acme", job.id).status == "done"
    assert not queue.complete(job.id, "w1")


def test_complete_and_claim_is_complete_then_claim(backends: Backends) -> None:
    queue = backends.queue
    first, _ = queue.enqueue("acme", "run", {"n": 1}, now=0.0)
    second, _ = queue.enqueue("acme", "run", {"n": 2}, now=1.0)
    assert queue.claim("w1", 10, now=2.0).id == first.id
    # Its own lease has lapsed but nobody took the job: the completion stands,
    # and the job is not put back in line nor claimed again.
    done, claimed = queue.complete_and_claim(first.id, "w1", "w1#2", 10, now=20.0)
    assert done and claimed.id == second.id and claimed.lease_owner == "w1#2"
    assert claimed.attempts == 1 and claimed.lease_expires_at == 30.0
    finished = queue.get("acme", first.id)
    assert (finished.status, finished.lease_expiries, finished.lease_owner) == ("done", 0, None)
    # The lease was lost: nothing completed; the claim still happens (here: the
    # lapsed lease itself, taken over).
    done, claimed = queue.complete_and_claim(first.id, "w1", "w2", 10, now=40.0)
    assert not done and claimed.id == second.id and claimed.lease_owner == "w2"
    assert claimed.attempts == 2 and claimed.lease_expiries == 1
    # A worker that never held it cannot complete a lapsed lease; the claim
    # still takes that lease over.
    done, claimed = queue.complete_and_claim(second.id, "w3", "w3", 10, now=60.0)
    assert not done and claimed.id == second.id and claimed.lease_owner == "w3"
    assert claimed.lease_expiries == 2
    done, claimed = queue.complete_and_claim(second.id, "w3", "w3", 10, now=61.0)
    assert done and claimed is None
    assert queue.stats() | {"lease_expiries": 0} == {
        "queued": 0, "leased": 0, "done": 2, "dead": 0, "lease_expiries": 0}


def test_idempotency_key_gives_one_job_per_tenant(backends: Backends) -> None:
    first, created = backends.queue.enqueue("acme", "run", {"n": 1}, idempotency_key="run:1")
    again, created_again = backends.queue.enqueue("acme", "run", {"n": 2}, idempotency_key="run:1")
    assert created and not created_again and again.id == first.id and again.payload == {"n": 1}
    assert backends.queue.find("acme", "run:1").id == first.id
    other, created_other = backends.queue.enqueue("globex", "run", {}, idempotency_key="run:1")
    assert created_other and other.id != first.id
    assert backends.queue.get("globex", first.id) is None


def test_priority_then_age(backends: Backends) -> None:
    queue = backends.queue
    low, _ = queue.enqueue("acme", "run", {}, priority=0, now=1.0)
    high, _ = queue.enqueue("acme", "run", {}, priority=5, now=2.0)
    old_low, _ = queue.enqueue("acme", "run", {}, priority=0, now=0.5)
    order = [queue.claim("w", 30, now=3.0).id for _ in range(3)]
    assert order == [high.id, old_low.id, low.id]


def test_delayed_jobs_wait_until_due(backends: Backends) -> None:
    job, _ = backends.queue.enqueue("acme", "run", {}, delay=5.0, now=100.0)
    assert backends.queue.claim("w", 30, now=104.9) is None
    assert backends.queue.claim("w", 30, now=105.0).id == job.id


def test_expired_lease_is_claimed_again_and_counted(backends: Backends) -> None:
    queue = backends.queue
    job, _ = queue.enqueue("acme", "run", {}, now=0.0)
    queue.claim("dead-worker", 10, now=0.0)
    assert queue.claim("w2", 10, now=9.9) is None
    again = queue.claim("w2", 10, now=10.0)
    assert again.id == job.id and again.attempts == 2 and again.lease_owner == "w2"
    assert again.lease_expiries == 1
    assert not queue.heartbeat(job.id, "dead-worker", 10, now=10.5)
    assert not queue.complete(job.id, "dead-worker")
    assert queue.stats()["lease_expiries"] == 1


def test_heartbeat_extends_the_lease(backends: Backends) -> None:
    queue = backends.queue
    job, _ = queue.enqueue("acme", "run", {}, now=0.0)
    queue.claim("w1", 10, now=0.0)
    assert queue.heartbeat(job.id, "w1", 10, now=8.0)
    assert queue.claim("w2", 10, now=15.0) is None
    assert queue.claim("w2", 10, now=18.0).id == job.id


def test_fail_retries_with_backoff_then_dead_letters(make_backends) -> None:
    backends = make_backends(RetryPolicy(base_seconds=2.0, cap_seconds=100.0, rng=random.Random(1)))
    queue = backends.queue
    job, _ = queue.enqueue("acme", "run", {}, max_attempts=3, now=0.0)
    now = 0.0
    for attempt in (1, 2):
        claimed = None
        while claimed is None:  # the backoff is random, so step time until it is due
            claimed = queue.claim("w", 10, now=now)
            now += 0.25
        assert claimed.attempts == attempt
        retried = queue.fail(job.id, "w", f"boom {attempt}", now=now)
        assert retried.status == "queued" and retried.last_error == f"boom {attempt}"
        assert now <= retried.run_at <= now + 2.0 * 2 ** (attempt - 1)
    claimed = None
    while claimed is None:
        claimed = queue.claim("w", 10, now=now)
        now += 0.25
    dead = queue.fail(job.id, "w", "boom 3", now=now)
    assert dead.status == "dead" and dead.attempts == 3
    assert queue.claim("w", 10, now=now + 1000) is None
    assert queue.stats()["dead"] == 1


def test_fail_without_retry_dead_letters_at_once(backends: Backends) -> None:
    job, _ = backends.queue.enqueue("acme", "run", {}, max_attempts=5)
    backends.queue.claim("w", 10)
    assert backends.queue.fail(job.id, "w", "bad input", retry=False).status == "dead"
    assert backends.queue.fail(job.id, "w", "again") is None


def test_exhausted_after_too_many_lease_expiries(backends: Backends) -> None:
    queue = backends.queue
    queue.enqueue("acme", "run", {}, max_attempts=2, now=0.0)
    first = queue.claim("w", 1, now=0.0)
    second = queue.claim("w", 1, now=2.0)
    third = queue.claim("w", 1, now=4.0)
    assert not first.exhausted and not second.exhausted and third.exhausted
    assert queue.fail(third.id, "w", "gave up", retry=True).status == "dead"


def test_release_returns_the_job_without_spending_an_attempt(backends: Backends) -> None:
    job, _ = backends.queue.enqueue("acme", "run", {}, now=0.0)
    backends.queue.claim("w1", 10, now=0.0)
    assert backends.queue.release(job.id, "w1", now=1.0)
    again = backends.queue.claim("w2", 10, now=1.0)
    assert again.id == job.id and again.attempts == 1


def test_release_with_a_delay_puts_the_job_back_later(backends: Backends) -> None:
    """How a worker leaves a paused tenant's job in line (engine/worker.py)."""
    job, _ = backends.queue.enqueue("acme", "run", {}, now=0.0)
    backends.queue.claim("w1", 10, now=0.0)
    assert backends.queue.release(job.id, "w1", delay=5.0, now=1.0)
    assert backends.queue.claim("w2", 10, now=5.9) is None
    again = backends.queue.claim("w2", 10, now=6.0)
    assert again.id == job.id and again.attempts == 1
    assert not backends.queue.release(job.id, "w1", delay=5.0, now=6.0)  # not its lease


def test_expiring_a_dead_workers_leases_requeues_its_jobs(backends: Backends) -> None:
    queue = backends.queue
    for index in range(3):
        queue.enqueue("acme", "run", {"n": index}, now=0.0)
    dead = [queue.claim("w1#1", 60, now=0.0), queue.claim("w1#2", 60, now=0.0)]
    alive = queue.claim("w10#1", 60, now=0.0)  # another worker whose id starts alike
    assert queue.expire_leases("w1", now=5.0) == 2
    assert queue.expire_leases("w1", now=5.0) == 0  # lapsed already
    again = [queue.claim("w2#1", 60, now=5.0), queue.claim("w2#2", 60, now=5.0)]
    assert {job.id for job in again} == {job.id for job in dead}
    assert all(job.lease_expiries == 1 and job.attempts == 2 for job in again)
    assert queue.claim("w2#3", 60, now=5.0) is None
    assert queue.heartbeat(alive.id, "w10#1", 60, now=5.0)
    assert not queue.complete(dead[0].id, "w1#1", now=6.0)  # its lease is gone


def test_stats_count_every_status(backends: Backends) -> None:
    queue = backends.queue
    for _ in range(3):
        queue.enqueue("acme", "run", {})
    claimed = queue.claim("w", 30)
    queue.complete(claimed.id, "w")
    queue.claim("w", 30)
    stats = queue.stats()
    assert stats == {"queued": 1, "leased": 1, "done": 1, "dead": 0, "lease_expiries": 0}


T0 = 1_800_000_000.0


def test_backlog_counts_due_jobs_leases_and_repeated_expiries(backends: Backends) -> None:
    queue = backends.queue
    for index in range(3):
        queue.enqueue("acme", "run", {"n": index}, now=T0 + index)
    queue.enqueue("beta", "run", {"n": 0}, now=T0 + 0.5)
    queue.enqueue("acme", "run", {"later": True}, delay=100, now=T0)
    poison, _ = queue.enqueue("beta", "run", {"poison": True}, priority=9, now=T0)
    # The poison job takes down two workers: each lease lapses, the next claimer takes it.
    assert queue.claim("w1#1", 10, now=T0 + 5).id == poison.id
    assert queue.claim("w2#1", 10, now=T0 + 16).id == poison.id
    assert queue.claim("w3#4", 10, now=T0 + 27).id == poison.id
    normal = queue.claim("w3#5", 10, now=T0 + 27)  # acme's first, the oldest

    backlog = queue.backlog(T0 + 30)
    assert (backlog.due, backlog.oldest_due_at) == (3, T0 + 0.5)
    assert backlog.due_by_tenant == {"acme": 2, "beta": 1}
    assert (backlog.leased, backlog.lapsed, backlog.dead, backlog.lease_expiries) == (2, 0, 0, 2)
    assert backlog.leases_by_worker == {"w3": 2}
    assert [(job.id, job.lease_expiries, job.attempts) for job in backlog.repeat_expiries] == [
        (poison.id, 2, 3)]
    later = queue.backlog(T0 + 40)  # both leases have lapsed; nothing claimed them yet
    assert later.lapsed == 2 and later.due == 3
    queue.fail(normal.id, "w3#5", "boom", retry=False, now=T0 + 31)
    assert queue.backlog(T0 + 31).dead == 1


def test_backlog_shows_a_job_held_again_after_one_expiry(backends: Backends) -> None:
    """A job whose worker died once and that another now holds: if that one
    dies too, it is the job's second; one waiting in line is not shown."""
    queue = backends.queue
    for index in range(2):
        queue.enqueue("acme", "run", {"n": index}, now=T0)
    assert queue.claim("w1#1", 10, now=T0) is not None
    assert queue.claim("w1#2", 10, now=T0) is not None
    # w1 died: the next claim puts both back in line, counting an expiry each.
    held = queue.claim("w2#1", 10, now=T0 + 11)
    assert held is not None and held.lease_expiries == 1

    backlog = queue.backlog(T0 + 12)

    assert [(job.id, job.status, job.lease_owner, job.lease_expiries)
            for job in backlog.repeat_expiries] == [(held.id, "leased", "w2#1", 1)]
    queue.complete(held.id, "w2#1", now=T0 + 13)
    assert queue.backlog(T0 + 14).repeat_expiries == []


def test_a_busy_tenant_does_not_starve_a_small_one(backends: Backends) -> None:
    queue = backends.queue
    for n in range(200):
        queue.enqueue("busy", "run", {"n": n}, now=n / 1000)
    small = {queue.enqueue("small", "run", {"n": n}, now=1.0 + n / 1000)[0].id for n in range(5)}
    claimed = [queue.claim("w", 60, now=2.0) for _ in range(10)]
    # The least recently served tenant goes first: the two take turns.
    assert [job.tenant_id for job in claimed] == ["busy", "small"] * 5
    assert {job.id for job in claimed if job.tenant_id == "small"} == small
    # Within a tenant, the oldest first; then the busy tenant has the queue alone.
    assert [job.payload["n"] for job in claimed if job.tenant_id == "busy"] == [0, 1, 2, 3, 4]
    assert queue.claim("w", 60, now=2.0).payload == {"n": 5}


def test_priority_comes_before_fairness(backends: Backends) -> None:
    queue = backends.queue
    urgent = [queue.enqueue("busy", "run", {}, priority=5, now=float(n))[0].id for n in range(3)]
    calm, _ = queue.enqueue("small", "run", {}, priority=0, now=0.0)
    order = [queue.claim("w", 60, now=10.0).id for _ in range(4)]
    assert order == [*urgent, calm.id]


def test_a_tenant_new_to_the_queue_goes_first(backends: Backends) -> None:
    queue = backends.queue
    for n in range(3):
        queue.enqueue("old", "run", {}, now=float(n))
    assert queue.claim("w", 60, now=5.0).tenant_id == "old"
    late, _ = queue.enqueue("new", "run", {}, now=6.0)
    # Served never: ahead of "old" even though its job is younger.
    assert queue.claim("w", 60, now=7.0).id == late.id


def test_taking_over_a_lapsed_lease_serves_its_tenant(backends: Backends) -> None:
    queue = backends.queue
    first, _ = queue.enqueue("a", "run", {}, now=0.0)
    queue.enqueue("a", "run", {}, now=1.0)
    other, _ = queue.enqueue("b", "run", {}, now=2.0)
    assert queue.claim("w1", 10, now=3.0).id == first.id  # serves a
    assert queue.claim("w2", 10, now=4.0).id == other.id  # serves b
    # At 20 both leases lapsed: a was served longer ago, so its old job comes back first.
    again = queue.claim("w3", 10, now=20.0)
    assert again.id == first.id and again.lease_expiries == 1
    assert queue.claim("w3", 10, now=20.0).id == other.id


def test_a_batch_claim_leases_what_claims_one_after_another_would(backends: Backends) -> None:
    queue = backends.queue
    for n in range(200):
        queue.enqueue("busy", "run", {"n": n}, now=n / 1000)
    for n in range(3):
        queue.enqueue("small", "run", {"n": n}, now=1.0 + n / 1000)
    urgent, _ = queue.enqueue("small", "run", {"n": 99}, priority=5, now=1.5)
    owners = [f"w#{k}" for k in range(8)]
    batch = queue.claim_batch(owners, 60, now=2.0)
    # Priority first, then the tenants take turns (least recently served first),
    # each owner leasing one job, in order.
    assert batch[0].id == urgent.id
    assert [(job.tenant_id, job.payload["n"]) for job in batch[1:]] == [
        ("busy", 0), ("small", 0), ("busy", 1), ("small", 1), ("busy", 2), ("small", 2),
        ("busy", 3)]
    assert [job.lease_owner for job in batch] == owners
    assert all(job.status == "leased" and job.attempts == 1 and job.lease_expires_at == 62.0
               for job in batch)
    # The next claim, alone, goes on where the batch stopped.
    assert queue.claim("w#9", 60, now=2.0).payload == {"n": 4}
    assert queue.stats()["leased"] == 9


def test_a_batch_takes_over_lapsed_leases_and_requeues_the_rest(backends: Backends) -> None:
    queue = backends.queue
    first, _ = queue.enqueue("a", "run", {}, now=0.0)
    second, _ = queue.enqueue("b", "run", {}, now=1.0)
    queue.claim("w1", 10, now=2.0)
    queue.claim("w2", 10, now=2.0)
    # Both leases lapsed at 12: a batch of one takes over the one of the tenant
    # served longer ago and puts the other back in line, both counted.
    [taken] = queue.claim_batch(["w3#1"], 10, now=20.0)
    assert taken.id == first.id and taken.lease_expiries == 1 and taken.attempts == 2
    back = queue.get("b", second.id)
    assert (back.status, back.lease_expiries, back.lease_owner) == ("queued", 1, None)
    assert [job.id for job in queue.claim_batch(["w4#1", "w4#2"], 10, now=21.0)] == [second.id]
    assert queue.claim_batch(["w5#1"], 10, now=21.0) == []


def test_a_batch_completion_completes_only_what_each_owner_holds(backends: Backends) -> None:
    queue = backends.queue
    jobs = [queue.enqueue("acme", "run", {"n": n}, now=float(n))[0] for n in range(3)]
    held = queue.claim_batch(["w#1", "w#2", "w#3"], 10, now=5.0)
    assert [job.id for job in held] == [job.id for job in jobs]
    done = queue.complete_batch([(held[0].id, "w#1"), (held[1].id, "someone-else"),
                                 (held[2].id, "w#3")], now=6.0)
    assert done == [True, False, True]
    assert [queue.get("acme", job.id).status for job in jobs] == ["done", "leased", "done"]
    assert queue.complete_batch([(held[0].id, "w#1")], now=7.0) == [False]  # done already
    assert queue.complete_batch([]) == []


def test_a_batch_claim_needs_distinct_owners(backends: Backends) -> None:
    import pytest

    from homeo.queue.base import QueueError

    with pytest.raises(QueueError, match="distinct owners"):
        backends.queue.claim_batch(["w#1", "w#1"], 10)
    with pytest.raises(QueueError, match="distinct owners"):
        backends.queue.claim_batch([], 10)
