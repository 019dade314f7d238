"""Accepting runs: a run is never left queued without a job."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from homeo.backends import Backends, open_backends
from homeo.config import Settings
from homeo.engine.agents import AgentSpec
from homeo.db.sqlite import SQLiteDatabase
from homeo.engine.submit import IdempotencyConflict, SubmitFailed, UnknownAgent, submit_run
from homeo.engine.sweep import Sweeper
from homeo.llm.providers.scripted import ScriptedModel
from homeo.queue.base import Queue
from homeo.queue.sqlite import SQLiteQueueStorage
from homeo.store.models import NewRun
from homeo.runtime import Runtime
from homeo.store.sqlite import SQLiteStore

from ..conftest import REDIS_URL


@pytest.fixture
def split_backends(tmp_path: Path):
    """Store and queue in separate files, so the queue can fail on its own."""
    store_db, queue_db = SQLiteDatabase(tmp_path / "store.db"), SQLiteDatabase(tmp_path / "q.db")
    backends = Backends(SQLiteStore(store_db), Queue(SQLiteQueueStorage(queue_db)),
                        "sqlite:///split")
    backends.store.put_agent("t", "echo", {"model": "local"})
    yield backends, queue_db
    backends.close()


def test_submit_creates_run_and_job_once(split_backends) -> None:
    backends, _ = split_backends
    new = NewRun(tenant_id="t", agent="echo", input="hi", idempotency_key="k")
    run, created = submit_run(backends, new)
    again, created_again = submit_run(backends, new)
    assert created and not created_again and again.id == run.id
    job = backends.queue.find("t", f"run:{run.id}")
    assert job.payload == {"run_id": run.id, "max_attempts": 3}
    assert backends.queue.stats()["queued"] == 1


def test_unknown_agent_names_the_known_ones(split_backends) -> None:
    backends, _ = split_backends
    with pytest.raises(UnknownAgent, match="unknown agent 'nope'; agents defined: echo"):
        submit_run(backends, NewRun(tenant_id="t", agent="nope", input="hi"))


def test_a_run_that_cannot_be_queued_is_failed_not_left_waiting(split_backends) -> None:
    backends, queue_db = split_backends
    with queue_db.write() as db:
        db.execute("DROP TABLE jobs")  # the queue breaks for real
    with pytest.raises(SubmitFailed, match="could not be queued .*no such table: jobs.*try again"):
        submit_run(backends, NewRun(tenant_id="t", agent="echo", input="hi"))
    (run,) = backends.store.list_runs("t")
    assert run.status == "failed" and run.error.startswith("could not be queued")


def _refuse_new_jobs(backends: Backends) -> None:
    """Make the database itself refuse the job's insert, inside the submission."""
    if backends.url.startswith("sqlite"):
        with backends.shared.write() as db:
            db.execute("CREATE TRIGGER refuse BEFORE INSERT ON jobs"
                       " BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        return
    with backends.shared.write() as db:
        db.execute("CREATE FUNCTION refuse() RETURNS trigger AS"
                   " $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql")
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON jobs"
                   " FOR EACH ROW EXECUTE FUNCTION refuse()")


def test_run_and_job_are_stored_together_or_not_at_all(backends: Backends) -> None:
    backends.store.put_agent("t", "echo", {"model": "local"})
    _refuse_new_jobs(backends)
    with pytest.raises(SubmitFailed, match="disk full.*nothing was stored; try again"):
        submit_run(backends, NewRun(tenant_id="t", agent="echo", input="hi", idempotency_key="k"))
    assert backends.store.list_runs("t") == []
    assert backends.queue.stats()["queued"] == 0


def test_same_idempotency_key_for_another_request_is_a_conflict(backends: Backends) -> None:
    backends.store.put_agent("t", "echo", {"model": "local"})
    backends.store.put_agent("t", "calc", {"model": "local"})
    first, _ = submit_run(backends, NewRun(tenant_id="t", agent="echo", input="hi",
                                           idempotency_key="k"))
    with pytest.raises(IdempotencyConflict, match=rf"key 'k' was already used for run {first.id}"
                                                  " with a different input"):
        submit_run(backends, NewRun(tenant_id="t", agent="echo", input="bye",
                                    idempotency_key="k"))
    with pytest.raises(IdempotencyConflict, match="with a different agent"):
        submit_run(backends, NewRun(tenant_id="t", agent="calc", input="hi",
                                    idempotency_key="k"))
    assert [run.id for run in backends.store.list_runs("t")] == [first.id]


def test_the_sweeper_queues_a_run_left_without_a_job(backends: Backends) -> None:
    # As a process that died between storing a run and queueing its job leaves it.
    stranded, _ = backends.store.create_run(NewRun(tenant_id="t", agent="echo", input="hi"),
                                            now=1000.0)
    recent, _ = backends.store.create_run(NewRun(tenant_id="t", agent="echo", input="hi"),
                                          now=1990.0)
    sweeper = Sweeper(backends, grace_seconds=30.0, max_attempts=4)
    assert sweeper.sweep(now=2000.0) == [stranded.id]
    job = backends.queue.find("t", f"run:{stranded.id}")
    assert job.status == "queued" and job.payload == {"run_id": stranded.id, "max_attempts": 4}
    assert backends.queue.find("t", f"run:{recent.id}") is None  # may be mid-submission
    assert sweeper.sweep(now=2000.0) == []  # queued once


def test_the_sweeper_pages_through_a_backlog(backends: Backends) -> None:
    runs = [backends.store.create_run(NewRun(tenant_id="t", agent="echo", input=str(i)),
                                      now=1000.0)[0] for i in range(5)]
    sweeper = Sweeper(backends, grace_seconds=30.0, batch=2)
    runs.sort(key=lambda run: run.id)
    swept = [sweeper.sweep(now=2000.0) for _ in range(3)]
    assert swept == [[runs[0].id, runs[1].id], [runs[2].id, runs[3].id], [runs[4].id]]
    assert sweeper.sweep(now=2000.0) == []  # back at the top, all queued now


def test_the_sweeper_ends_a_run_whose_job_ended_without_it(backends: Backends) -> None:
    backends.store.put_agent("t", "echo", {"model": "local"})
    run, _ = submit_run(backends, NewRun(tenant_id="t", agent="echo", input="hi"))
    job = backends.queue.claim("w", 30.0)
    backends.queue.fail(job.id, "w", "boom", retry=False)
    assert Sweeper(backends, grace_seconds=0.0).sweep(now=9e9) == [run.id]
    after = backends.store.get_run("t", run.id)
    assert after.status == "failed" and "its job ended (dead)" in after.error


@pytest.fixture
def redis_backends(tmp_path: Path, redis_url: str):
    """The store in a SQLite file, the queue on Redis: two systems."""
    backends = open_backends(f"sqlite:///{tmp_path / 'homeo.db'}", None, redis_url)
    backends.store.put_agent("t", "echo", {"model": "local"})
    yield backends
    backends.close()


@pytest.mark.redis
def test_with_the_queue_on_redis_the_run_is_stored_then_queued(redis_backends) -> None:
    assert redis_backends.shared is None  # no transaction spans both
    new = NewRun(tenant_id="t", agent="echo", input="hi", idempotency_key="k")
    run, created = submit_run(redis_backends, new)
    again, created_again = submit_run(redis_backends, new)
    assert created and not created_again and again.id == run.id
    job = redis_backends.queue.find("t", f"run:{run.id}")
    assert job.payload == {"run_id": run.id, "max_attempts": 3}
    assert redis_backends.queue.stats()["queued"] == 1


# argv: database url, queue url. Submits one run; the test kills it mid-way.
SUBMITTER = """
import sys

from homeo.backends import open_backends
from homeo.engine.submit import submit_run
from homeo.store.models import NewRun

backends = open_backends(sys.argv[1], None, sys.argv[2])
submit_run(backends, NewRun(tenant_id="default", agent="echo", input="hi"))
"""


@pytest.mark.redis
@pytest.mark.slow
def test_a_submitter_killed_between_run_and_job_is_repaired(tmp_path: Path,
                                                             redis_url: str) -> None:
    """SIGKILL a real submitting process after it stored the run and while its
    job's write waits on Redis: the sweeper queues the run, a worker runs it."""
    import redis

    settings = Settings(data_dir=tmp_path, poll_seconds=0.01, queue_url=redis_url)
    runtime = Runtime.open(settings)
    try:
        runtime.models.add("test:echo", ScriptedModel(["hello"]))
        runtime.agents.publish("default", {"echo": AgentSpec(name="echo", model="test:echo")})
        admin = redis.Redis.from_url(REDIS_URL)
        # Redis holds every write for up to 30 s: the job's enqueue waits there.
        admin.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
        try:
            submitter = subprocess.Popen(
                [sys.executable, "-c", SUBMITTER, settings.resolved_database_url(), redis_url],
                stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + 30
                while not runtime.backends.store.list_runs("default"):
                    assert submitter.poll() is None, submitter.stderr.read()
                    assert time.monotonic() < deadline, "the run was never stored"
                    time.sleep(0.02)
            finally:
                submitter.kill()
                submitter.wait()
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
            admin.close()
        assert submitter.returncode == -signal.SIGKILL
        (run,) = runtime.backends.store.list_runs("default")
        assert run.status == "queued"
        assert runtime.backends.queue.find("default", f"run:{run.id}") is None  # stranded
        worker = runtime.worker(1)
        assert worker.sweeper.sweep(now=time.time() + 60) == [run.id]
        assert asyncio.run(worker.run_until_idle()) == 1
        after, job = (runtime.backends.store.get_run("default", run.id),
                      runtime.backends.queue.find("default", f"run:{run.id}"))
        assert (after.status, after.output, job.status) == ("succeeded", "hello", "done")
    finally:
        asyncio.run(runtime.aclose())
