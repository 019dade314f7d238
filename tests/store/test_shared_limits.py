"""Store contract for rate buckets shared by every process on one database,
and for who submitted a run. Every backend must pass these."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from homeo.backends import Backends


def test_a_bucket_starts_full_then_refills_at_its_rate(backends: Backends) -> None:
    take = backends.store.take_rate_tokens
    bucket = [("key:k1", 3, 60.0)]  # 3 a minute: one back every 20 s
    assert [take(bucket, now=1000.0) for _ in range(3)] == [{}, {}, {}]
    assert take(bucket, now=1000.0) == {"key:k1": pytest.approx(20.0)}
    assert take(bucket, now=1010.0) == {"key:k1": pytest.approx(10.0)}
    assert take(bucket, now=1020.0) == {}
    assert take(bucket, now=1020.0) == {"key:k1": pytest.approx(20.0)}
    assert take(bucket, now=5000.0) == {}  # refilled, but never past its size
    assert [take(bucket, now=5000.0) for _ in range(3)] == [
        {}, {}, {"key:k1": pytest.approx(20.0)}]


def test_buckets_give_a_token_together_or_not_at_all(backends: Backends) -> None:
    take = backends.store.take_rate_tokens
    key, tenant = ("key:k1", 10, 60.0), ("tenant:acme", 2, 60.0)
    assert take([key, tenant], now=0.0) == {}
    assert take([("key:k2", 10, 60.0), tenant], now=0.0) == {}
    refused = take([key, tenant], now=0.0)
    assert refused == {"tenant:acme": pytest.approx(30.0)}  # only the short one is named
    # The key's bucket gave nothing for the refused call: 9 of its 10 remain.
    assert [take([key], now=0.0) for _ in range(9)] == [{}] * 9
    assert "key:k1" in take([key], now=0.0)
    assert take([], now=0.0) == {}


def test_concurrent_takers_never_overspend_a_bucket(
    make_backends: Callable[..., Backends],
) -> None:
    """Two stores on one database (as two processes would be) share the budget."""
    first, second = make_backends(), make_backends()
    granted: list[bool] = []
    lock = threading.Lock()

    def spend(backends: Backends) -> None:
        for _ in range(15):
            taken = backends.store.take_rate_tokens([("tenant:acme", 20, 3600.0)], now=7.0)
            with lock:
                granted.append(taken == {})

    threads = [threading.Thread(target=spend, args=(b,)) for b in (first, second, first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 60 and granted.count(True) == 20


def test_the_first_submitter_of_a_run_stays(backends: Backends) -> None:
    store = backends.store
    assert store.run_submitter("acme", "run_1") is None
    assert store.record_submitter("acme", "run_1", "key:k1") == "key:k1"
    assert store.record_submitter("acme", "run_1", "key:k2") == "key:k1"
    assert store.run_submitter("acme", "run_1") == "key:k1"
    assert store.run_submitter("globex", "run_1") is None


def test_rate_token_wait_reads_a_bucket_without_taking(backends: Backends) -> None:
    take, wait = backends.store.take_rate_tokens, backends.store.rate_token_wait
    assert wait("auth-failures:203.0.113.9", 2, 10.0, now=0.0) == 0.0  # never used
    assert take([("auth-failures:203.0.113.9", 2, 10.0)], now=0.0) == {}
    assert wait("auth-failures:203.0.113.9", 2, 10.0, now=0.0) == 0.0  # one left
    assert take([("auth-failures:203.0.113.9", 2, 10.0)], now=0.0) == {}
    for _ in range(3):  # asking takes nothing: the answer stays the same
        assert wait("auth-failures:203.0.113.9", 2, 10.0, now=0.0) == pytest.approx(5.0)
    assert wait("auth-failures:203.0.113.9", 2, 10.0, now=4.0) == pytest.approx(1.0)
    assert wait("auth-failures:203.0.113.9", 2, 10.0, now=5.0) == 0.0
    assert wait("auth-failures:198.51.100.1", 2, 10.0, now=0.0) == 0.0


def test_idle_buckets_under_a_prefix_are_forgotten_and_others_kept(backends: Backends) -> None:
    take = backends.store.take_rate_tokens
    for name, at in [("auth-failures:a", 0.0), ("auth-failures:b", 50.0), ("key:k1", 0.0),
                     ("auth_failures:c", 0.0)]:  # `_` is no LIKE wildcard here
        assert take([(name, 1, 10.0)], now=at) == {}
    assert backends.store.forget_rate_buckets("auth-failures:", 30.0, now=60.0) == 1
    assert take([("auth-failures:a", 1, 10.0)], now=60.0) == {}  # starts full again
    assert "auth-failures:b" in take([("auth-failures:b", 1, 100.0)], now=60.0)  # kept: empty
    assert "key:k1" in take([("key:k1", 1, 1000.0)], now=60.0)
    assert "auth_failures:c" in take([("auth_failures:c", 1, 1000.0)], now=60.0)
