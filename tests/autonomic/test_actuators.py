"""The actuators change the running system in every process: what one
process's loop writes to the shared control state is applied by a `homeo
worker` subprocess (paused tenant, slots, quarantined job) and by another
app instance on the same database (breaker held open, routing weight moved,
a tenant's submissions shed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from homeo.autonomic.actuators import Actuators
from homeo.autonomic.control import ControlState
from homeo.backends import open_backends
from homeo.config import Settings
from homeo.engine.submit import run_job_key, submit_run
from homeo.keys import create_key
from homeo.runtime import Runtime
from homeo.store.models import NewRun
from homeo.llm.router import Router
from tests.api.conftest import Served, add_key, serve  # noqa: F401 (the fixture)

SUPPORT = Path(__file__).parent.parent / "support"
HOMEO = Path(sys.executable).parent / "homeo"
DEADLINE_SECONDS = 90.0


def eventually(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def test_a_worker_process_applies_pause_slots_and_quarantine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SUPPORT))
    import scriptkit

    url = f"sqlite:///{tmp_path / 'homeo.db'}"
    agents = scriptkit.write_agents(tmp_path / "agents", ["echo"])
    runtime = Runtime.open(Settings(data_dir=tmp_path / "data", database_url=url,
                                    agents_dir=agents))
    store, queue = runtime.backends.store, runtime.backends.queue
    create_key(store, "acme", "test")
    runtime.publish_agents()
    loop = Actuators(store, queue, actor="autonomic:test")
    loop.apply("pause_tenant", {"tenant": "acme"}, decision_id="dec_1", now=time.time())
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SUPPORT),
                                                       os.environ.get("PYTHONPATH")])),
           "HOMEO_DATA_DIR": str(tmp_path / "data"), "HOMEO_DATABASE_URL": url,
           "HOMEO_AGENTS_DIR": str(agents), "HOMEO_WORKERS": "1",
           "HOMEO_WORKER_MAX_CONCURRENCY": "4", "HOMEO_POLL_SECONDS": "0.05",
           "HOMEO_CONTROL_REFRESH_SECONDS": "0.05", "HOMEO_WORKER_HEARTBEAT_SECONDS": "0.1",
           "HOMEO_LOG_LEVEL": "warning"}
    worker = subprocess.Popen([str(HOMEO), "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        # acme's run is older, so a worker ignoring the pause would run it first.
        paused, _ = submit_run(runtime.backends, NewRun(tenant_id="acme", agent="echo",
                                                        input="paused"))
        free, _ = submit_run(runtime.backends, NewRun(tenant_id="default", agent="echo",
                                                      input="free"))
        eventually("default's run succeeds",
                   lambda: store.run_status("default", free.id) == "succeeded")
        assert store.run_status("acme", paused.id) == "queued"
        job = queue.find("acme", run_job_key(paused))
        assert job is not None and job.status == "queued" and job.attempts == 0

        workers = store.list_workers()
        assert [w.slots for w in workers] == [1]
        loop.apply("raise_concurrency", {"from": 1, "to": 3, "base": 1}, decision_id="dec_2",
                   now=time.time())
        eventually("the worker runs 3 slots",
                   lambda: [w.slots for w in store.list_workers()] == [3])

        poison, _ = submit_run(runtime.backends, NewRun(tenant_id="acme", agent="echo",
                                                        input="poison"))
        poison_job = queue.find("acme", run_job_key(poison))
        loop.apply("quarantine_job", {"tenant": "acme", "job": poison_job.id},
                   decision_id="dec_3", now=time.time())
        loop.revert("pause_tenant", {"tenant": "acme"}, now=time.time())
        eventually("acme's paused run succeeds once resumed",
                   lambda: store.run_status("acme", paused.id) == "succeeded")
        eventually("the quarantined run fails",
                   lambda: store.run_status("acme", poison.id) == "failed")
        failed = store.get_run("acme", poison.id)
        assert "quarantined: the autonomic loop found it poison (decision dec_3)" in failed.error
        assert queue.get("acme", poison_job.id).status == "dead"
    finally:
        worker.terminate()
        _, errors = worker.communicate(timeout=60)
        runtime.backends.close()
    assert worker.returncode == 0, errors.decode()[-2000:]


def test_another_app_instance_holds_the_breaker_moves_weight_and_sheds(
        serve: Callable[..., Served], tmp_path: Path) -> None:  # noqa: F811
    models = {"chat": [{"model": "scripted:scriptkit:echo_model", "name": "first"},
                       {"model": "scripted:scriptkit:echo_model", "name": "second"}]}
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    other = serve(with_worker=False, database_url=shared, models=models,
                  control_refresh_seconds=0.05)
    loop_side = open_backends(shared)  # the process whose loop acts
    try:
        acme = other.client_for(add_key(other, "acme"))

        def breaker_of(name: str) -> str:
            providers = other.client.get("/v1/providers").json()["providers"]
            return next(p["breaker"]["state"] for p in providers if p["name"] == name)

        assert breaker_of("first") == "closed"
        loop = Actuators(loop_side.store, loop_side.queue, actor="autonomic:elsewhere")
        loop.apply("open_breaker", {"deployment": "first"}, decision_id="dec_1",
                   now=time.time())
        eventually("the other app sees first's breaker open",
                   lambda: breaker_of("first") == "open")
        assert breaker_of("second") == "closed"

        router = other.runtime.models.get("chat")
        while not isinstance(router, Router):  # the response cache's wrapper
            router = router.model
        assert router.weights() == [1.0, 1.0]
        loop.apply("shift_weight", {"deployment": "first", "moves": [
            {"alias": "chat", "from": 1.0, "to": 0.5}]}, decision_id="dec_2", now=time.time())
        eventually("the other app's router gives first half its weight",
                   lambda: router.weights() == [0.5, 1.0])

        submitted = other.client.post("/v1/runs", json={"agent": "echo", "input": "x"})
        assert submitted.status_code == 202, submitted.text
        loop.apply("shed_tenant", {"tenant": "default"}, decision_id="dec_3", now=time.time())
        shed: httpx.Response = eventually(
            "default's submissions are shed",
            lambda: (r := other.client.post("/v1/runs", json={"agent": "echo", "input": "x"}))
            .status_code == 429 and r)
        assert shed.headers["retry-after"] == "30"
        assert "the autonomic loop is shedding its load: retry in 30s" in (
            shed.json()["error"]["message"])
        assert acme.post("/v1/runs", json={"agent": "echo", "input": "x"}).status_code == 202

        loop.revert("shed_tenant", {"tenant": "default"}, now=time.time())
        loop.revert("open_breaker", {"deployment": "first"}, now=time.time())
        eventually("the other app's breaker is its own again",
                   lambda: breaker_of("first") == "closed")
        eventually("default may submit again", lambda: other.client.post(
            "/v1/runs", json={"agent": "echo", "input": "x"}).status_code == 202)
    finally:
        loop_side.close()


def test_a_fresh_read_sees_a_quarantine_the_cache_does_not_yet(tmp_path: Path) -> None:
    """A worker claiming a job whose last worker died asks the store, not its
    cache, whether the loop quarantined it a moment ago."""
    backends = open_backends(f"sqlite:///{tmp_path / 'homeo.db'}")
    try:
        now = 1_800_000_000.0
        control = ControlState(backends.store, refresh_seconds=60.0, clock=lambda: now)
        assert control.quarantined("job_1") is None  # read, and cached for a minute
        Actuators(backends.store, backends.queue, actor="autonomic:test").apply(
            "quarantine_job", {"tenant": "acme", "job": "job_1"}, decision_id="dec_9", now=now)

        assert control.quarantined("job_1") is None
        assert control.quarantined("job_1", fresh=True) == (
            "the autonomic loop found it poison (decision dec_9)")
        assert control.reads == 2
    finally:
        backends.close()
