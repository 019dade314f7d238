"""Queue throughput: jobs claimed and completed per second, homeo against bare SQL.

For each backend (SQLite file, PostgreSQL schema) and each number of worker
processes, N jobs are enqueued first; then the worker processes (spawned, each
opening its own backends) loop claim -> complete until the queue is empty. The
clock runs from the moment every worker is ready to the moment the last one
sees an empty queue.

The baseline, in the same database and the same run, is the least a durable
queue can do: a one-table queue drained with one `DELETE ... RETURNING`
statement per job (with `FOR UPDATE SKIP LOCKED` on PostgreSQL). It has no
leases, no retries and no history, so the gap to it is what homeo's guarantees
cost (two transactions per job: claim, then complete).

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
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import POSTGRES_URL, machine, postgres_problem, postgres_schema, table

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


def homeo_drain(url: str) -> tuple[Callable[[], int], Callable[[], None]]:
    from homeo.backends import open_backends

    backends = open_backends(url)
    worker_id = f"bench:{os.getpid()}"

    def drain() -> int:
        done = 0
        while (job := backends.queue.claim(worker_id, LEASE_SECONDS)) is not None:
            if not backends.queue.complete(job.id, worker_id):
                raise RuntimeError(f"lost the lease on {job.id}")
            done += 1
        return done

    return drain, backends.close


def bare_drain(url: str) -> tuple[Callable[[], int], Callable[[], None]]:
    if url.startswith("sqlite:///"):
        connection = _sqlite_connect(url.removeprefix("sqlite:///"))

        def take() -> tuple[int, str] | None:
            connection.execute("BEGIN IMMEDIATE")
            row = connection.execute(BARE_SQLITE_TAKE).fetchone()
            connection.execute("COMMIT")
            return row

    else:
        import psycopg

        connection = psycopg.connect(url, autocommit=True)

        def take() -> tuple[int, str] | None:
            return connection.execute(BARE_POSTGRES_TAKE).fetchone()

    def drain() -> int:
        done = 0
        while (row := take()) is not None:
            json.loads(row[1])
            done += 1
        return done

    return drain, connection.close


def worker(kind: str, url: str, ready: Any, results: Any) -> None:
    try:
        drain, close = homeo_drain(url) if kind == "homeo" else bare_drain(url)
        ready.wait(READY_TIMEOUT_SECONDS)  # everyone opened its connections: go
        began_cpu = sum(os.times()[:2])
        jobs = drain()
        ended, cpu = time.perf_counter(), sum(os.times()[:2]) - began_cpu
        close()
        results.put((jobs, ended, cpu, None))
    except BaseException as error:  # report instead of leaving the parent waiting
        results.put((0, time.perf_counter(), 0.0, f"{type(error).__name__}: {error}"))


# --- filling the queues and timing the drain ----------------------------------


def enqueue_homeo(url: str, jobs: int) -> float:
    """Enqueue through homeo's queue, one transaction per job; returns jobs/s."""
    from homeo.backends import open_backends

    backends = open_backends(url)
    began = time.perf_counter()
    for index in range(jobs):
        backends.queue.enqueue("bench", "run", {"run_id": f"run_{index:022x}"})
    rate = jobs / (time.perf_counter() - began)
    backends.close()
    return rate


def enqueue_bare(url: str, jobs: int) -> float:
    """The same, one plain INSERT (one transaction) per job; returns jobs/s."""
    payloads = [json.dumps({"run_id": f"run_{index:022x}"}) for index in range(jobs)]
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


def drain(kind: str, url: str, processes: int) -> Drained:
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(processes + 1)
    results = context.Queue()
    workers = [
        context.Process(target=worker, args=(kind, url, ready, results), daemon=True)
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


def check_homeo_done(url: str, jobs: int) -> None:
    """Every job done exactly once: no job lost, none claimed twice."""
    from homeo.backends import open_backends

    backends = open_backends(url)
    stats = backends.queue.stats()
    backends.close()
    if stats["done"] != jobs or stats["queued"] or stats["leased"]:
        raise RuntimeError(f"homeo queue not drained cleanly: {stats}")


def fresh_database(
    backend: str, scratch: Path, label: str, admin_url: str
) -> AbstractContextManager[str]:
    """The URL of an empty database for one measurement (a schema dropped after)."""
    if backend == "postgres":
        return postgres_schema(admin_url)
    return nullcontext(f"sqlite:///{scratch / f'{label}.db'}")


def measure(kind: str, backend: str, processes: int, jobs: int, scratch: Path,
            label: str, admin_url: str) -> tuple[float, Drained]:
    with fresh_database(backend, scratch, label, admin_url) as url:
        enqueue_rate = enqueue_homeo(url, jobs) if kind == "homeo" else enqueue_bare(url, jobs)
        drained = drain(kind, url, processes)
        if drained.jobs != jobs:
            raise RuntimeError(f"{kind} drained {drained.jobs} of {jobs} jobs")
        if kind == "homeo":
            check_homeo_done(url, jobs)
    return enqueue_rate, drained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Claim+complete throughput of homeo's queue against a bare SQL queue.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=2000, help="jobs enqueued per measurement")
    parser.add_argument("--processes", default="1,2", help="worker process counts to try")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite and/or postgres")
    parser.add_argument("--repeat", type=int, default=3,
                        help="measurements per cell; the median is shown")
    parser.add_argument("--postgres-url", default=POSTGRES_URL,
                        help="admin URL; a fresh schema is made and dropped per measurement")
    args = parser.parse_args(argv)
    process_counts = [int(p) for p in args.processes.split(",") if p]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"sqlite", "postgres"}:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    if "postgres" in backends and (problem := postgres_problem(args.postgres_url)):
        print(f"skipping PostgreSQL: {problem}", file=sys.stderr)
        backends.remove("postgres")

    print(f"queue throughput: {args.jobs} jobs per measurement, median of {args.repeat}",
          flush=True)
    print(f"machine: {machine()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="homeo-bench-queue-") as scratch:
        for backend in backends:
            for processes in process_counts:
                cells: dict[str, list[tuple[float, Drained]]] = {"homeo": [], "bare": []}
                for attempt in range(args.repeat):
                    for kind in ("homeo", "bare"):  # alternate, so drift hits both
                        label = f"{backend}-{processes}-{kind}-{attempt}"
                        cells[kind].append(
                            measure(kind, backend, processes, args.jobs, Path(scratch), label,
                                    args.postgres_url)
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
                rows[-2][-1] = f"{rates['homeo'] / rates['bare']:.2f}x"
                print(f"  done: {backend}, {processes} process(es)", file=sys.stderr, flush=True)
    print()
    print(table(
        ["backend", "procs", "queue", "claim+complete jobs/s", "µs/job (wall)",
         "worker CPU µs/job", "enqueue jobs/s (1 proc)", "homeo/bare"],
        rows,
    ))
    print()
    print("bare = one DELETE ... RETURNING per job on a one-table queue in the same database"
          " (no leases, retries or history).")
    print("homeo = Queue.claim (one statement: reclaim expired leases, lease the next job;"
          " one transaction on SQLite) then Queue.complete (a second one).")
    print("worker CPU = user+system time of the worker processes; the database server's own"
          " CPU is not counted. Workers and PostgreSQL share the same cores.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
