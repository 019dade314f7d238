"""What the benchmarks share: a throwaway PostgreSQL schema, a table printer, and
one line that says which machine the figures come from."""

from __future__ import annotations

import datetime
import os
import platform
import secrets
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

POSTGRES_URL = os.environ.get(
    "HOMEO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("HOMEO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def machine() -> str:
    """Date, cores, Python and how busy the machine already is: figures mean
    little without them (other processes on 2 cores move them a lot)."""
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    busy = cpu_busy()
    warning = " (other processes are running: these figures will be low)" if busy > 0.2 else ""
    return (
        f"{today}; {os.cpu_count()} cores; Python {platform.python_version()};"
        f" {platform.system()} {platform.release()}; CPU busy before start {busy:.0%}{warning}"
    )


def cpu_busy(seconds: float = 0.5) -> float:
    """The share of all cores busy over the next `seconds` (0 when /proc is missing)."""

    def sample() -> tuple[int, int]:
        fields = [int(n) for n in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return idle, sum(fields)

    try:
        idle_before, total_before = sample()
        time.sleep(seconds)
        idle_after, total_after = sample()
    except OSError:
        return 0.0
    total = total_after - total_before
    return 1 - (idle_after - idle_before) / total if total else 0.0


def postgres_problem(admin_url: str) -> str | None:
    """None when the server answers, else why it cannot be used."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed: pip install -e '.[bench]'"
    try:
        with psycopg.connect(admin_url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except Exception as error:
        return f"PostgreSQL not reachable at {admin_url}: {str(error).strip().splitlines()[0]}"
    return None


@contextmanager
def postgres_schema(admin_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped on the way out."""
    import psycopg

    schema = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in admin_url else "?"
    try:
        yield f"{admin_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def redis_problem(url: str) -> str | None:
    """None when the Redis server answers, else why it cannot be used."""
    try:
        import redis
    except ImportError:
        return "redis is not installed: pip install -e '.[bench]'"
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        return f"Redis not reachable at {url}: {error}"
    finally:
        client.close()
    return None


@contextmanager
def redis_prefix(url: str) -> Iterator[str]:
    """`url` with a fresh key prefix (`?prefix=`), its keys deleted on the way out."""
    import redis

    prefix = f"bench_{secrets.token_hex(6)}:"
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}prefix={prefix}"
    finally:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        all(_looks_numeric(row[i]) for row in cells[1:]) and len(cells) > 1
        for i in range(len(headers))
    ]

    def line(row: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace("x", "").replace("%", "").replace("+", "")
    try:
        float(stripped)
    except ValueError:
        return text in {"-", "n/a"}
    return True
