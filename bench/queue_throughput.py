"""Queue throughput: jobs claimed and completed per second, homeo against a bare queue.

For each backend (SQLite file, PostgreSQL schema, Redis key prefix with the
store in a SQLite file) and each number of worker
processes, N jobs are enqueued first; then the worker processes (spawned, each
opening its own backends) loop claim -> complete until the queue is empty. The
clock runs from the moment every worker is ready to the moment the last one
sees an empty queue.

The baseline, in the same database and the same run, is the least a durable
queue can do: a one-table queue drained with one `DELETE ... RETURNING`
statement per job (with `FOR UPDATE SKIP LOCKED` on PostgreSQL), and on Redis
one `LPOP` per job from a list. It has no leases, no retries and no history, so
the gap to it is what homeo's guarantees cost (two transactions or scripts per
job: claim, then complete; one on PostgreSQL when a completion claims the next
job in the same round trip, as a worker slot does: the "fused" rows; two per
eight jobs when eight are claimed, then completed, at once: the "batch8" rows).

    .venv/bin/python bench/queue_throughput.py
    .venv/bin/python bench/queue_throughput.py --jobs 5000 --processes 1,2,4 --backends sqlite
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    POSTGRES_URL,
    REDIS_URL,
    machine,
    postgres_problem,
    postgres_schema,
    redis_prefix,
    redis_problem,
    table,
)

LEASE_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 120.0
BARE_SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bare_jobs (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)"
)
BARE_POSTGRES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bare_jobs (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL)"
)
BARE_SQLITE_TAKE = (
    "DELETE FROM bare_jobs WHERE id = (SELECT id FROM bare_jobs ORDER BY id LIMIT 1)"
    " RETURNING id, payload"
)
BARE_POSTGRES_TAKE = (
    "DELETE FROM bare_jobs WHERE id ="
    " (SELECT id FROM bare_jobs ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " RETURNING id, payload"
)


@dataclass(frozen=True)
class Target:
    """Where one measurement's queue lives: a database, and a Redis queue URL or None."""

    url: str
    queue_url: str | None = None


@dataclass
class Drained:
    jobs: int
    seconds: float
    cpu_seconds: float  # user + system time of the worker processes while draining


# --- the workers (run in spawned processes) ---------------------------------


def _sqlite_connect(path: str) -> sqlite3.Connection:
    """Opened with the same pragmas homeo's SQLite database uses."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("PRAGMA busy_timeout=30000")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def homeo_drain(target: Target) -> tuple[Callable[[], int], Callable[[], None]]:
    from homeo.backends import open_backends

    backends = open_backends(target.url, None, target.queue_url)
    worker_id = f"bench:{os.getpid()}"

    def drain() -> int:
        done = 0
        while (job := backends.queue.claim(worker_id, LEASE_SECONDS)) is not None:
            if not backends.queue.complete(job.id, worker_id):
                raise RuntimeError(f"lost the lease on {job.id}")
            done += 1
        return done

    return drain, backends.close


def fused_drain(target: Target) -> tuple[Callable[[], int], Callable[[], None]]:
    """As a worker slot does: each completion claims the next job in the same call."""
    from homeo.backends import open_backends

    backends = open_backends(target.url, None, target.queue_url)
    worker_id = f"bench:{os.getpid()}"

    def drain() -> int:
        done, job = 0, backends.queue.claim(worker_id, LEASE_SECONDS)
        while job is not None:
            completed, next_job = backends.queue.complete_and_claim(
                job.id, worker_id, worker_id, LEASE_SECONDS)
            if not completed:
                raise RuntimeError(f"lost the lease on {job.id}")
            done, job = done + 1, next_job
        return done

    return drain, backends.close


def batch_drain(target: Target, size: int) -> tuple[Callable[[], int], Callable[[], None]]:
    """Claims `size` jobs in one call (one owner each, as a worker's slots would
    be), then completes the batch in one more: two round trips per batch."""
    from homeo.backends import open_backends

    backends = open_backends(target.url, None, target.queue_url)
    owners = [f"bench:{os.getpid()}#{slot}" for slot in range(size)]

    def drain() -> int:
        done = 0
        while batch := backends.queue.claim_batch(owners, LEASE_SECONDS):
            completed = backends.queue.complete_batch(
                [(job.id, job.lease_owner or "") for job in batch])
            if not all(completed):
                raise RuntimeError(f"lost a lease in a batch of {len(batch)}")
            done += len(batch)
        return done

    return drain, backends.close


def bare_drain(target: Target) -> tuple[Callable[[], int], Callable[[], None]]:
    url = target.url
    if target.queue_url:
        from homeo.queue.redis import connect

        client, prefix = connect(target.queue_url)

        def pop() -> tuple[int, str] | None:
            payload = client.lpop(prefix + "bare_jobs")
            return None if payload is None else (0, payload)

        take, close = pop, client.close
    elif url.startswith("sqlite:///"):
        connection = _sqlite_connect(url.removeprefix("sqlite:///"))

        def take() -> tuple[int, str] | None:
            connection.execute("BEGIN IMMEDIATE")
            row = connection.execute(BARE_SQLITE_TAKE).fetchone()
            connection.execute("COMMIT")
            return row

        close = connection.close
    else:
        import psycopg

        pg = psycopg.connect(url, autocommit=True)

        def take() -> tuple[int, str] | None:
            return pg.execute(BARE_POSTGRES_TAKE).fetchone()

        close = pg.close

    def drain() -> int:
        done = 0
        while (row := take()) is not None:
            json.loads(row[1])
            done += 1
        return done

    return drain, close


BATCH_SIZE = 8
DRAINS: dict[str, Callable[[Target], tuple[Callable[[], int], Callable[[], None]]]] = {
    "homeo": homeo_drain, "fused": fused_drain,
    f"batch{BATCH_SIZE}": lambda target: batch_drain(target, BATCH_SIZE), "bare": bare_drain}


def worker(kind: str, target: Target, ready: Any, results: Any) -> None:
    try:
        drain, close = DRAINS[kind](target)
        ready.wait(READY_TIMEOUT_SECONDS)  # everyone opened its connections: go
        began_cpu = sum(os.times()[:2])
        jobs = drain()
        ended, cpu = time.perf_counter(), sum(os.times()[:2]) - began_cpu
        close()
        results.put((jobs, ended, cpu, None))
    except BaseException as error:  # report instead of leaving the parent waiting
        results.put((0, time.perf_counter(), 0.0, f"{type(error).__name__}: {error}"))


# --- filling the queues and timing the drain ----------------------------------


def enqueue_homeo(target: Target, jobs: int) -> float:
    """Enqueue through homeo's queue, one transaction per job; returns jobs/s."""
    from homeo.backends import open_backends

    backends = open_backends(target.url, None, target.queue_url)
    began = time.perf_counter()
    for index in range(jobs):
        backends.queue.enqueue("bench", "run", {"run_id": f"run_{index:022x}"})
    rate = jobs / (time.perf_counter() - began)
    backends.close()
    return rate


def enqueue_bare(target: Target, jobs: int) -> float:
    """The same, one plain INSERT (one transaction) or RPUSH per job; returns jobs/s."""
    payloads = [json.dumps({"run_id": f"run_{index:022x}"}) for index in range(jobs)]
    url = target.url
    if target.queue_url:
        from homeo.queue.redis import connect

        client, prefix = connect(target.queue_url)
        began = time.perf_counter()
        for payload in payloads:
            client.rpush(prefix + "bare_jobs", payload)
        rate = jobs / (time.perf_counter() - began)
        client.close()
        return rate
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        connection = _sqlite_connect(path)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(BARE_SQLITE_SCHEMA)
        began = time.perf_counter()
        for payload in payloads:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO bare_jobs (payload) VALUES (?)", (payload,))
            connection.execute("COMMIT")
    else:
        import psycopg

        connection = psycopg.connect(url, autocommit=True)
        connection.execute(BARE_POSTGRES_SCHEMA)
        began = time.perf_counter()
        for payload in payloads:
            connection.execute("INSERT INTO bare_jobs (payload) VALUES (%s)", (payload,))
    rate = jobs / (time.perf_counter() - began)
    connection.close()
    return rate


def drain(kind: str, target: Target, processes: int) -> Drained:
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(processes + 1)
    results = context.Queue()
    workers = [
        context.Process(target=worker, args=(kind, target, ready, results), daemon=True)
        for _ in range(processes)
    ]
    for process in workers:
        process.start()
    ready.wait(READY_TIMEOUT_SECONDS)
    began = time.perf_counter()
    outcomes = [results.get(timeout=600) for _ in workers]
    for process in workers:
        process.join(timeout=30)
    errors = [error for *_, error in outcomes if error]
    if errors:
        raise RuntimeError(f"{kind} worker failed: {errors[0]}")
    return Drained(
        jobs=sum(jobs for jobs, *_ in outcomes),
        seconds=max(ended for _, ended, *_ in outcomes) - began,
        cpu_seconds=sum(cpu for _, _, cpu, _ in outcomes),
    )


def check_homeo_done(target: Target, jobs: int) -> None:
    """Every job done exactly once: no job lost, none claimed twice."""
    from homeo.backends import open_backends

    backends = open_backends(target.url, None, target.queue_url)
    stats = backends.queue.stats()
    backends.close()
    if stats["done"] != jobs or stats["queued"] or stats["leased"]:
        raise RuntimeError(f"homeo queue not drained cleanly: {stats}")


@contextmanager
def fresh_target(backend: str, scratch: Path, label: str, admin_url: str,
                 redis_url: str) -> Iterator[Target]:
    """An empty queue for one measurement (a schema or key prefix dropped after)."""
    sqlite = f"sqlite:///{scratch / f'{label}.db'}"
    if backend == "postgres":
        with postgres_schema(admin_url) as url:
            yield Target(url)
    elif backend == "redis":
        with redis_prefix(redis_url) as queue_url:
            yield Target(sqlite, queue_url)
    else:
        yield Target(sqlite)


def measure(kind: str, backend: str, processes: int, jobs: int, scratch: Path,
            label: str, admin_url: str, redis_url: str) -> tuple[float, Drained]:
    with fresh_target(backend, scratch, label, admin_url, redis_url) as target:
        enqueue_rate = (enqueue_bare(target, jobs) if kind == "bare"
                        else enqueue_homeo(target, jobs))
        drained = drain(kind, target, processes)
        if drained.jobs != jobs:
            raise RuntimeError(f"{kind} drained {drained.jobs} of {jobs} jobs")
        if kind != "bare":
            check_homeo_done(target, jobs)
    return enqueue_rate, drained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Claim+complete throughput of homeo's queue against a bare queue.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=2000, help="jobs enqueued per measurement")
    parser.add_argument("--processes", default="1,2", help="worker process counts to try")
    parser.add_argument("--backends", default="sqlite,postgres,redis",
                        help="any of sqlite, postgres, redis")
    parser.add_argument("--kinds", default=",".join(DRAINS),
                        help=f"which of {', '.join(DRAINS)} to measure (bare always is)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="measurements per cell; the median is shown")
    parser.add_argument("--postgres-url", default=POSTGRES_URL,
                        help="admin URL; a fresh schema is made and dropped per measurement")
    parser.add_argument("--redis-url", default=REDIS_URL,
                        help="Redis server; a fresh key prefix is used and deleted per measurement")
    args = parser.parse_args(argv)
    process_counts = [int(p) for p in args.processes.split(",") if p]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := set(kinds) - set(DRAINS):
        parser.error(f"unknown kind(s): {', '.join(sorted(unknown))}; pick from"
                     f" {', '.join(DRAINS)}")
    kinds = [kind for kind in DRAINS if kind in kinds or kind == "bare"]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"sqlite", "postgres", "redis"}:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    if "postgres" in backends and (problem := postgres_problem(args.postgres_url)):
        print(f"skipping PostgreSQL: {problem}", file=sys.stderr)
        backends.remove("postgres")
    if "redis" in backends and (problem := redis_problem(args.redis_url)):
        print(f"skipping Redis: {problem}", file=sys.stderr)
        backends.remove("redis")

    print(f"queue throughput: {args.jobs} jobs per measurement, median of {args.repeat}",
          flush=True)
    print(f"machine: {machine()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="homeo-bench-queue-") as scratch:
        for backend in backends:
            for processes in process_counts:
                cells: dict[str, list[tuple[float, Drained]]] = {kind: [] for kind in kinds}
                for attempt in range(args.repeat):
                    for kind in kinds:  # alternate, so drift hits every kind
                        label = f"{backend}-{processes}-{kind}-{attempt}"
                        cells[kind].append(
                            measure(kind, backend, processes, args.jobs, Path(scratch), label,
                                    args.postgres_url, args.redis_url)
                        )
                rates = {}
                for kind, found in cells.items():
                    drain_rate = statistics.median(d.jobs / d.seconds for _, d in found)
                    enqueue_rate = statistics.median(rate for rate, _ in found)
                    cpu_us = statistics.median(d.cpu_seconds / d.jobs * 1e6 for _, d in found)
                    rates[kind] = drain_rate
                    rows.append([backend, processes, kind, f"{drain_rate:,.0f}",
                                 f"{1e6 / drain_rate:,.0f}", f"{cpu_us:,.0f}",
                                 f"{enqueue_rate:,.0f}", ""])
                for row, kind in zip(rows[-len(kinds):-1], kinds[:-1], strict=True):
                    row[-1] = f"{rates[kind] / rates['bare']:.2f}x"
                print(f"  done: {backend}, {processes} process(es)", file=sys.stderr, flush=True)
    print()
    print(table(
        ["backend", "procs", "queue", "claim+complete jobs/s", "µs/job (wall)",
         "worker CPU µs/job", "enqueue jobs/s (1 proc)", "/bare"],
        rows,
    ))
    print()
    print("bare = one DELETE ... RETURNING per job on a one-table queue in the same database,"
          " or one LPOP per job from a Redis list (no leases, retries or history).")
    print("homeo = Queue.claim (one statement: reclaim expired leases, lease the next job;"
          " one transaction on SQLite, one Lua script on Redis) then Queue.complete"
          " (a second one).")
    print("fused = Queue.complete_and_claim, as a worker slot completes a job and claims the"
          " next: one statement and one commit on PostgreSQL, both scripts in one MULTI/EXEC"
          " round trip on Redis, complete then claim on SQLite.")
    print(f"batch{BATCH_SIZE} = Queue.claim_batch of {BATCH_SIZE} owners (one statement on"
          " PostgreSQL; claims one at a time on SQLite and Redis), then Queue.complete_batch"
          " of what it leased (one statement on PostgreSQL).")
    print("worker CPU = user+system time of the worker processes; the database server's own"
          " CPU is not counted. Workers and PostgreSQL share the same cores.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
