"""The queue's tests run on every queue backend: SQLite, PostgreSQL, and Redis
(with the store in a SQLite file beside it)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from homeo.backends import Backends, open_backends
from homeo.queue.base import RetryPolicy


@dataclass(frozen=True)
class Urls:
    database: str
    queue: str | None = None  # None: the queue lives in the database


@pytest.fixture(params=[
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
])
def urls(request: pytest.FixtureRequest, tmp_path) -> Urls:
    sqlite = f"sqlite:///{tmp_path / 'homeo.db'}"
    if request.param == "sqlite":
        return Urls(sqlite)
    if request.param == "postgres":
        return Urls(request.getfixturevalue("postgres_url"))
    return Urls(sqlite, request.getfixturevalue("redis_url"))


@pytest.fixture
def make_backends(urls: Urls) -> Iterator[Callable[..., Backends]]:
    """Open backends on the test's database and queue; several calls share them."""
    opened: list[Backends] = []

    def make(retry: RetryPolicy | None = None) -> Backends:
        backends = open_backends(urls.database, retry or RetryPolicy(rng=random.Random(7)),
                                 urls.queue)
        opened.append(backends)
        return backends

    yield make
    for backends in opened:
        backends.close()
