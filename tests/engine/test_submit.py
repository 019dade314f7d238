"""Accepting runs: a run is never left queued without a job."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeo.backends import Backends
from homeo.db.sqlite import SQLiteDatabase
from homeo.engine.submit import SubmitFailed, UnknownAgent, submit_run
from homeo.queue.sqlite import SQLiteQueue
from homeo.store.models import NewRun
from homeo.store.sqlite import SQLiteStore


@pytest.fixture
def split_backends(tmp_path: Path):
    """Store and queue in separate files, so the queue can fail on its own."""
    store_db, queue_db = SQLiteDatabase(tmp_path / "store.db"), SQLiteDatabase(tmp_path / "q.db")
    backends = Backends(SQLiteStore(store_db), SQLiteQueue(queue_db), "sqlite:///split")
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
    assert job.payload == {"run_id": run.id} and backends.queue.stats()["queued"] == 1


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
