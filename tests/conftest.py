"""Shared fixtures: real SQLite files, a real PostgreSQL and a real Redis server.

PostgreSQL tests run against HOMEO_TEST_POSTGRES_URL (default: the local
server). Each test gets its own schema, dropped afterwards. Redis tests run
against HOMEO_TEST_REDIS_URL, each under its own key prefix, deleted
afterwards. When a server is missing the tests skip on a laptop but FAIL under
CI=true: CI must never go green by skipping a backend.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Callable, Iterator

import pytest

from homeo.backends import Backends, open_backends
from homeo.queue.base import RetryPolicy

POSTGRES_URL = os.environ.get(
    "HOMEO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("HOMEO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def postgres_or_skip() -> str:
    """The admin URL of the test server, after checking that it answers."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except Exception as error:  # the server or the driver is missing
        message = f"PostgreSQL not reachable at {POSTGRES_URL}: {error}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped after the test."""
    import psycopg

    admin = postgres_or_skip()
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in admin else "?"
    yield f"{admin}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


def redis_or_skip() -> str:
    """The URL of the test Redis server, after checking that it answers."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:  # the server or the client library is missing
        message = f"Redis not reachable at {REDIS_URL}: {error}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return REDIS_URL


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A queue URL whose keys carry a fresh prefix, deleted after the test."""
    import redis

    server = redis_or_skip()
    prefix = f"t_{secrets.token_hex(6)}:"
    separator = "&" if "?" in server else "?"
    yield f"{server}{separator}prefix={prefix}"
    client = redis.Redis.from_url(server)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'homeo.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def make_backends(backend_url: str) -> Iterator[Callable[..., Backends]]:
    """Open backends on the test's database; several calls share the database."""
    opened: list[Backends] = []

    def make(retry: RetryPolicy | None = None) -> Backends:
        backends = open_backends(backend_url, retry or RetryPolicy(rng=random.Random(7)))
        opened.append(backends)
        return backends

    yield make
    for backends in opened:
        backends.close()


@pytest.fixture
def backends(make_backends: Callable[..., Backends]) -> Backends:
    return make_backends()
