"""Two worker processes drain one queue: every job runs exactly once.

Each worker is a real `python` process with its own connections. It claims,
records the execution (start and end) in a table of the store's database, and
completes the job. The test then reads those records back.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from homeo.backends import open_backends

from .conftest import Urls

JOBS = 300
READY_TIMEOUT_SECONDS = 60.0
RUN_TIMEOUT_SECONDS = 120.0

# argv: url, queue url ('' for none), worker id, ready file, go file, budget in seconds.
WORKER = """
import json, random, sqlite3, sys, time
from pathlib import Path

from homeo.backends import open_backends

url, queue_url, worker, ready, go, budget = sys.argv[1:7]
backends = open_backends(url, None, queue_url or None)
if url.startswith("sqlite:///"):
    log = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)

    def started(job_id):
        return log.execute(
            "INSERT INTO executions (job_id, worker, started_at) VALUES (?, ?, ?)",
            (job_id, worker, time.time()),
        ).lastrowid

    def finished(row_id):
        log.execute("UPDATE executions SET finished_at = ? WHERE id = ?", (time.time(), row_id))
else:
    import psycopg

    log = psycopg.connect(url, autocommit=True)

    def started(job_id):
        return log.execute(
            "INSERT INTO executions (job_id, worker, started_at)"
            " VALUES (%s, %s, clock_timestamp()) RETURNING id",
            (job_id, worker),
        ).fetchone()[0]

    def finished(row_id):
        log.execute(
            "UPDATE executions SET finished_at = clock_timestamp() WHERE id = %s", (row_id,)
        )

Path(ready).touch()
deadline = time.monotonic() + float(budget)
while not Path(go).exists() and time.monotonic() < deadline:
    time.sleep(0.005)
done, idle, lost = 0, 0, 0
while time.monotonic() < deadline and idle < 5:
    job = backends.queue.claim(worker, 60)
    if job is None:  # drained, or the last rows are locked by the other worker
        idle += 1
        time.sleep(0.02)
        continue
    idle = 0
    row_id = started(job.id)
    time.sleep(random.uniform(0, 0.002))  # the "work"
    finished(row_id)
    if backends.queue.complete(job.id, worker):
        done += 1
    else:
        lost += 1
backends.close()
print(json.dumps({"worker": worker, "done": done, "lost": lost}))
"""


def _create_executions_table(url: str) -> None:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute(
                "CREATE TABLE executions (id INTEGER PRIMARY KEY, job_id TEXT NOT NULL,"
                " worker TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL)"
            )
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE executions (id BIGSERIAL PRIMARY KEY, job_id TEXT NOT NULL,"
            " worker TEXT NOT NULL, started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ)"
        )


def _executions(url: str) -> list[tuple[str, str, Any, Any]]:
    sql = "SELECT job_id, worker, started_at, finished_at FROM executions ORDER BY id"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            return [tuple(row) for row in connection.execute(sql).fetchall()]  # type: ignore[misc]
    import psycopg

    with psycopg.connect(url) as connection:
        return [tuple(row) for row in connection.execute(sql).fetchall()]  # type: ignore[misc]


def _wait_for(paths: list[Path], workers: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not all(path.exists() for path in paths):
        if any(worker.poll() is not None for worker in workers):
            return  # one died during start-up; communicate() shows why
        if time.monotonic() > deadline:
            raise AssertionError(f"workers not ready within {READY_TIMEOUT_SECONDS}s")
        time.sleep(0.01)


@pytest.mark.slow
def test_two_processes_run_every_job_exactly_once(urls: Urls, tmp_path: Path) -> None:
    backend_url = urls.database
    backends = open_backends(backend_url, None, urls.queue)
    job_ids = {
        backends.queue.enqueue("acme", "run", {"n": n}, priority=n % 3)[0].id for n in range(JOBS)
    }
    backends.close()
    _create_executions_table(backend_url)

    go = tmp_path / "go"
    names = ("worker-a", "worker-b")
    ready = [tmp_path / f"{name}.ready" for name in names]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                backend_url,
                urls.queue or "",
                name,
                str(flag),
                str(go),
                str(RUN_TIMEOUT_SECONDS / 2),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, flag in zip(names, ready, strict=True)
    ]
    reports = []
    try:
        _wait_for(ready, workers)
        go.touch()  # both start claiming at the same moment
        for worker in workers:
            out, err = worker.communicate(timeout=RUN_TIMEOUT_SECONDS)
            assert worker.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    executions = _executions(backend_url)
    runs_per_job = Counter(job_id for job_id, _, _, _ in executions)
    assert set(runs_per_job) == job_ids
    assert set(runs_per_job.values()) == {1}, "a job ran more than once"
    by_job: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
    for job_id, _, started_at, finished_at in executions:
        assert finished_at is not None and started_at <= finished_at
        by_job[job_id].append((started_at, finished_at))
    for job_id, spans in by_job.items():
        spans.sort()
        for (_, first_end), (second_start, _) in pairwise(spans):
            assert first_end <= second_start, f"two executions of {job_id} overlapped"

    assert all(report["lost"] == 0 for report in reports), reports
    assert sum(report["done"] for report in reports) == JOBS
    assert all(report["done"] > 0 for report in reports), reports
    assert Counter(worker for _, worker, _, _ in executions) == {
        report["worker"]: report["done"] for report in reports
    }
    backends = open_backends(backend_url, None, urls.queue)
    try:
        assert backends.queue.stats() == {
            "queued": 0,
            "leased": 0,
            "done": JOBS,
            "dead": 0,
            "lease_expiries": 0,
        }
    finally:
        backends.close()
