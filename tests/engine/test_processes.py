"""`homeo worker --processes N` (engine/processes.py): the supervisor restarts
a worker process that dies, kills and replaces one the autonomic loop found
dead (the `replace_worker` actuator), and forgets a replaced worker's row once
its leases are gone and its replacement beats, so `worker_dead` clears.

The children are real processes on a real SQLite store: small Python
programs that beat a worker row as `homeo worker` does (and stop beating,
hung but alive, when told by a file), and in the last test `homeo worker`
itself, started by the real command line."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from homeo.autonomic.actuators import Actuators
from homeo.autonomic.analyze import Analysis, Diagnosis
from homeo.autonomic.control import SUPERVISOR_PREFIX, recycle_key, replace_key
from homeo.autonomic.execute import Executor, Safety, Workers
from homeo.autonomic.plan import Planner, Situation
from homeo.backends import Backends, open_backends
from homeo.engine.processes import ProcessSupervisor

SRC = str(Path(__file__).resolve().parents[2] / "src")
DEADLINE_SECONDS = 120.0

# A worker stand-in: beats its row every 0.1 s until the file hang-<pid> shows up
# in its folder, then stays alive without beating (a hung worker).
BEATER = """
import os, socket, sys, time
from pathlib import Path
from homeo.backends import open_backends
from homeo.store.models import WorkerRecord
backends = open_backends(sys.argv[1])
folder, me = Path(sys.argv[2]), os.getpid()
started = time.time()
while True:
    if not (folder / f"hang-{me}").exists():
        now = time.time()
        backends.store.beat_worker(WorkerRecord(
            id=f"{socket.gethostname()}:{me}:t", host=socket.gethostname(), pid=me, slots=1,
            started_at=started, last_seen=now))
    time.sleep(0.1)
"""


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    opened = open_backends(f"sqlite:///{tmp_path / 'homeo.db'}")
    yield opened
    opened.close()


@pytest.fixture
def supervisor(backends: Backends, tmp_path: Path) -> Iterator[ProcessSupervisor]:
    url = f"sqlite:///{tmp_path / 'homeo.db'}"
    env = {**os.environ, "PYTHONPATH": SRC}

    def spawn(slot: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", BEATER, url, str(tmp_path)], env=env)

    kept = ProcessSupervisor(spawn, backends.store, backends.queue, count=2,
                             stop_grace_seconds=10.0)
    yield kept
    kept.stop()


def ticking_until(supervisor: ProcessSupervisor, condition: Callable[[], bool],
                  what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        supervisor.tick()
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {DEADLINE_SECONDS:g}s: {what}")


def all_beating(supervisor: ProcessSupervisor) -> bool:
    return all(child.worker_id for child in supervisor.children)


def worker_ids(backends: Backends) -> set[str]:
    return {row.id for row in backends.store.list_workers()}


@pytest.mark.slow
def test_a_child_that_dies_is_restarted_and_its_row_forgotten(
        supervisor: ProcessSupervisor, backends: Backends) -> None:
    supervisor.start()
    ticking_until(supervisor, lambda: all_beating(supervisor), "both children beat")
    advertised = [e for e in backends.store.list_control(now=time.time())
                  if e.key.startswith(SUPERVISOR_PREFIX)]
    assert [sorted(e.value["children"]) for e in advertised] == [
        sorted(child.process.pid for child in supervisor.children)]
    victim = supervisor.children[0]
    os.kill(victim.process.pid, signal.SIGKILL)  # a process this test's supervisor started
    ticking_until(supervisor, lambda: supervisor.restarts == 1 and all_beating(supervisor)
                  and victim.worker_id not in worker_ids(backends),
                  "the dead child is replaced and its row forgotten")
    assert supervisor.children[0].process.pid != victim.process.pid
    assert victim.process.returncode == -signal.SIGKILL
    assert len(worker_ids(backends)) == 2 and supervisor.replaced == 0


@pytest.mark.slow
def test_the_loop_replaces_a_hung_supervised_worker(
        supervisor: ProcessSupervisor, backends: Backends, tmp_path: Path) -> None:
    supervisor.start()
    ticking_until(supervisor, lambda: all_beating(supervisor), "both children beat")
    hung = supervisor.children[1]
    assert hung.worker_id is not None
    job, _ = backends.queue.enqueue("acme", "run", {})
    assert backends.queue.claim(f"{hung.worker_id}#1", 600).id == job.id  # a 10-minute lease
    (tmp_path / f"hang-{hung.process.pid}").touch()  # it stops beating but stays alive
    store = backends.store
    loop = Executor(store, Planner(random.Random(3)),
                    Actuators(store, backends.queue, actor="autonomic:test"),
                    observer="test", safety=Safety(mode="on", settle_seconds=10.0),
                    aliases=dict, workers=Workers(base_slots=2, max_slots=2))
    now = time.time()
    dead = Diagnosis("worker_dead", hung.worker_id, 0.95, "no heartbeat",
                     [{"signal": "worker.leases", "subject": hung.worker_id, "value": 1.0,
                       "rule": "> 0 raises confidence"}])
    loop.step(Analysis(now, [], [dead]), now)
    (decision,) = store.list_decisions(limit=10)
    assert (decision.action, decision.status) == ("replace_worker", "executed")
    assert backends.queue.backlog().lapsed == 1  # its lease ended: the job goes to another
    assert backends.queue.claim("other#1", 60).id == job.id
    ticking_until(supervisor, lambda: supervisor.replaced == 1 and all_beating(supervisor)
                  and hung.worker_id not in worker_ids(backends),
                  "the hung child is killed, replaced, and its row forgotten")
    assert hung.process.returncode == -signal.SIGKILL
    assert replace_key(hung.worker_id) not in {
        e.key for e in store.list_control(now=time.time())}


@pytest.mark.slow
def test_the_loop_recycles_grown_workers_one_at_a_time(
        supervisor: ProcessSupervisor, backends: Backends) -> None:
    supervisor.start()
    ticking_until(supervisor, lambda: all_beating(supervisor), "both children beat")
    first, second = supervisor.children
    store = backends.store
    loop = Executor(store, Planner(random.Random(3)),
                    Actuators(store, backends.queue, actor="autonomic:test"),
                    observer="test", safety=Safety(mode="on", settle_seconds=10.0),
                    aliases=dict, workers=Workers(base_slots=2, max_slots=2))

    def bloated(worker: str | None) -> Diagnosis:
        assert worker is not None
        return Diagnosis("worker_bloated", worker, 0.8, "grew",
                         [{"signal": "worker.rss_bytes", "subject": worker,
                           "value": 300.0 * 2**20, "rule": ""}])

    now = time.time()
    loop.step(Analysis(now, [], [bloated(second.worker_id), bloated(first.worker_id)]), now)
    # One at a time: the second diagnosis waits while the first worker is recycled.
    (decision,) = store.list_decisions(limit=10)
    assert (decision.action, decision.subject, decision.status) == (
        "recycle_worker", second.worker_id, "executed")
    ticking_until(supervisor, lambda: supervisor.recycled == 1 and all_beating(supervisor)
                  and recycle_key(second.worker_id or "") not in {
                      e.key for e in store.list_control(now=time.time())},
                  "the grown child is stopped, replaced, and the request removed")
    # SIGTERM, not SIGKILL: a real worker finishes its steps and releases its runs.
    assert second.process.returncode == -signal.SIGTERM
    assert first.process.poll() is None and supervisor.replaced == 0
    now = time.time()
    loop.step(Analysis(now, [], [bloated(first.worker_id)]), now)
    assert sorted((d.subject, d.status) for d in store.list_decisions(limit=10)) == sorted(
        [(second.worker_id, "executed"), (first.worker_id, "executed")])
    ticking_until(supervisor, lambda: supervisor.recycled == 2 and all_beating(supervisor)
                  and first.process.poll() is not None and first not in supervisor.children,
                  "the other child is recycled too")
    assert first.process.returncode == -signal.SIGTERM


def test_recycle_worker_waits_for_another_recycle_and_needs_a_supervisor() -> None:
    grown = Diagnosis("worker_bloated", "box:7:w", 0.8, "grew",
                      [{"signal": "worker.rss_bytes", "subject": "box:7:w", "value": 9.0,
                        "rule": ""}])
    planner = Planner(random.Random(1))
    kept = planner.plan(grown, Situation(supervised={"box:7:w"}), {})
    assert kept is not None and kept.params == {"worker": "box:7:w", "rss_bytes": 9.0}
    waiting = planner.plan(grown, Situation(supervised={"box:7:w"}, recycling={"box:8:v"}), {})
    assert waiting is None
    assert planner.plan(grown, Situation(), {}) is None


def test_replace_worker_is_planned_only_for_a_supervised_worker() -> None:
    dead = Diagnosis("worker_dead", "box:7:w", 0.9, "no heartbeat",
                     [{"signal": "worker.leases", "subject": "box:7:w", "value": 2.0,
                       "rule": "> 0 raises confidence"}])
    kept = Planner(random.Random(1)).plan(
        dead, Situation(slots=2, base_slots=2, max_slots=2, supervised={"box:7:w"}), {})
    assert kept is not None and kept.action == "replace_worker"
    assert [a.get("reason") for a in kept.explanation["alternatives"]
            if a["action"] == "expire_leases"] == [
        "its supervisor can replace it (replace_worker ends its leases too)"]
    assert kept.params == {"worker": "box:7:w", "leases": 2.0}
    alone = Planner(random.Random(1)).plan(dead, Situation(slots=2, base_slots=2, max_slots=2), {})
    assert alone is not None and alone.action == "expire_leases"
    refused = [a for a in alone.explanation["alternatives"] if a["action"] == "replace_worker"]
    assert refused[0]["reason"] == "no `homeo worker --processes` supervisor keeps it"


def test_a_supervisor_needs_a_process(backends: Backends) -> None:
    with pytest.raises(ValueError, match="at least one worker process"):
        ProcessSupervisor(lambda slot: subprocess.Popen(["true"]), backends.store,
                          backends.queue, count=0)


@pytest.mark.slow
def test_homeo_worker_processes_keeps_n_real_workers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    env.update(PYTHONPATH=SRC, HOMEO_DATA_DIR=str(data), HOMEO_AUTONOMIC="off",
               HOMEO_WORKER_HEARTBEAT_SECONDS="0.5", HOMEO_LOG_LEVEL="warning")
    backends = open_backends(f"sqlite:///{data / 'homeo.db'}")
    supervisor = subprocess.Popen(
        [sys.executable, "-c", "from homeo.cli import main; main()", "worker", "--workers", "1",
         "--processes", "2"], env=env)
    try:
        def children() -> list[int]:
            found = [e.value["children"] for e in backends.store.list_control(now=time.time())
                     if e.key.startswith(SUPERVISOR_PREFIX)]
            return found[0] if found else []

        def rows() -> dict[int, str]:
            return {row.pid: row.id for row in backends.store.list_workers()}

        def waiting(condition: Callable[[], bool], what: str) -> None:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while not condition():
                assert supervisor.poll() is None, f"the supervisor exited: {supervisor.returncode}"
                assert time.monotonic() < deadline, f"not within {DEADLINE_SECONDS:g}s: {what}"
                time.sleep(0.2)

        waiting(lambda: len(children()) == 2 and set(children()) <= set(rows()),
                "two worker processes beat")
        first = children()
        os.kill(first[0], signal.SIGKILL)  # a worker this test's supervisor started
        waiting(lambda: first[0] not in children() and len(children()) == 2
                and set(children()) <= set(rows()) and first[0] not in rows(),
                "the killed worker is replaced and its row forgotten")
        assert first[1] in children()
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=DEADLINE_SECONDS) == 0
        backends.close()
