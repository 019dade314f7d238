"""The Redis queue keeps its leases in a stream's consumer group: what the
contract suite cannot see, read here straight from the stream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from homeo.queue.base import Queue
from homeo.queue.redis import RedisQueueStorage, connect

pytestmark = pytest.mark.redis


@pytest.fixture
def queue(redis_url: str) -> Iterator[tuple[Queue, object, str]]:
    client, prefix = connect(redis_url)
    queue = Queue(RedisQueueStorage(client, prefix))
    yield queue, client, prefix
    queue.close()


def pending(client, stream: str) -> dict[str, str]:
    """Pending entry id -> the consumer holding it."""
    return {row["message_id"]: row["consumer"]
            for row in client.xpending_range(stream, "workers", "-", "+", 100)}


def test_a_lease_is_a_pending_entry_that_moves_with_the_lease(queue) -> None:
    queue, client, prefix = queue
    stream = prefix + "stream"
    job, _ = queue.enqueue("acme", "run", {}, now=0.0)
    assert not client.exists(stream)  # a job enters the stream when claimed
    queue.claim("w1#1", 10, now=1.0)
    [(entry, fields)] = client.xrange(stream)
    assert fields == {"job": job.id} and pending(client, stream) == {entry: "w1#1"}
    # The lease lapses; the next claimer takes over the same entry (XCLAIM).
    again = queue.claim("w2#1", 10, now=20.0)
    assert again.id == job.id and again.lease_expiries == 1
    assert pending(client, stream) == {entry: "w2#1"} and client.xlen(stream) == 1
    assert queue.complete(job.id, "w2#1", now=21.0)
    assert pending(client, stream) == {} and client.xlen(stream) == 0


@pytest.mark.parametrize("end", ["retry", "dead", "release"])
def test_every_end_of_a_lease_acknowledges_and_deletes_its_entry(queue, end: str) -> None:
    queue, client, prefix = queue
    stream = prefix + "stream"
    job, _ = queue.enqueue("acme", "run", {}, now=0.0)
    queue.claim("w1#1", 10, now=1.0)
    if end == "release":
        assert queue.release(job.id, "w1#1", now=2.0)
    else:
        assert queue.fail(job.id, "w1#1", "boom", retry=end == "retry", delay=0.0, now=2.0)
    assert pending(client, stream) == {} and client.xlen(stream) == 0
    if end != "dead":  # back in line: a new claim adds a new entry
        queue.claim("w1#2", 10, now=3.0)
        [(entry, _)] = client.xrange(stream)
        assert pending(client, stream) == {entry: "w1#2"}


def test_expiring_a_dead_worker_finds_its_leases_in_the_pending_list(queue) -> None:
    queue, client, prefix = queue
    for n in range(3):
        queue.enqueue("acme", "run", {"n": n}, now=float(n))
    mine = [queue.claim(f"w1#{slot}", 60, now=5.0).id for slot in (1, 2)]
    other = queue.claim("w10#1", 60, now=5.0)
    consumers = {c["name"]: c["pending"]
                 for c in client.xinfo_consumers(prefix + "stream", "workers")}
    assert consumers == {"w1#1": 1, "w1#2": 1, "w10#1": 1}
    assert queue.expire_leases("w1", now=6.0) == 2
    retaken = {queue.claim("w2#1", 60, now=6.0).id for _ in range(2)}
    assert retaken == set(mine) and queue.claim("w2#1", 60, now=6.0) is None
    assert queue.get("acme", other.id).lease_owner == "w10#1"
