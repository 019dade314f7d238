"""SIGKILL a worker at chosen and at random points; nothing accepted is lost and
no side effect happens twice.

Workers are real `homeo worker` processes sharing the test's database (and,
in the Redis cases, the test's Redis queue beside it). The agents come from tests/e2e/support/crashkit.py (see its docstring for the kill
points).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine.submit import run_job_key, submit_run
from homeo.runtime import Runtime
from homeo.store.models import NewRun

SUPPORT = Path(__file__).parent / "support"
HOMEO = Path(sys.executable).parent / "homeo"
DEADLINE_SECONDS = 240


def write_agents(folder: Path) -> Path:
    folder.mkdir()
    for name, tool_name in (("writer", "append_line"), ("marker", "mark_line")):
        agent = (f"name: {name}\nmodel: scripted:crashkit:writer_model\n"
                 f"tools: [crashkit:{tool_name}]\nmax_steps: 6\ntimeouts: {{step: 20, run: 300}}\n")
        (folder / f"{name}.yaml").write_text(agent)
        # The same agent, with a person approving each tool call.
        (folder / f"gated-{name}.yaml").write_text(
            agent.replace(f"name: {name}", f"name: gated-{name}")
            + f"approval: {{tools: [{tool_name}]}}\n")
    (folder / "boss.yaml").write_text(
        "name: boss\nmodel: scripted:crashkit:boss_model\nagents: [writer]\nmax_steps: 4\n"
        "timeouts: {step: 20, run: 300}\n")
    return folder


class Harness:
    """A database with runs in it, and worker processes that get killed."""

    def __init__(self, tmp: Path, url: str, sleep: float = 0.0, queue_url: str = "") -> None:
        sys.path.insert(0, str(SUPPORT))
        self.tmp = tmp
        self.agents = write_agents(tmp / "agents")
        self.plan = tmp / "plan"
        self.marks = tmp / "marks"
        self.plan.mkdir()
        self.marks.mkdir()
        self.lines = tmp / "lines.txt"
        self.executions = tmp / "executions.txt"
        self.lines.touch()
        self.executions.touch()
        self.settings = Settings(data_dir=tmp / "data", database_url=url, agents_dir=self.agents,
                                 max_attempts=5, queue_url=queue_url)
        self.runtime = Runtime.open(self.settings)
        self.runtime.publish_agents()
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SUPPORT),
                                                        os.environ.get("PYTHONPATH")])),
            "HOMEO_DATA_DIR": str(tmp / "data"),
            "HOMEO_DATABASE_URL": url,
            "HOMEO_QUEUE_URL": queue_url,
            "HOMEO_AGENTS_DIR": str(self.agents),
            "HOMEO_LEASE_SECONDS": "1",
            "HOMEO_POLL_SECONDS": "0.05",
            "HOMEO_WORKERS": "1",
            "HOMEO_MAX_ATTEMPTS": "5",
            "HOMEO_RETRY_BASE_SECONDS": "0.05",
            "HOMEO_SWEEP_SECONDS": "1",
            "HOMEO_LOG_LEVEL": "warning",
            "CRASHKIT_PLAN": str(self.plan),
            "CRASHKIT_FILE": str(self.lines),
            "CRASHKIT_MARKS": str(self.marks),
            "CRASHKIT_EXECUTIONS": str(self.executions),
            "CRASHKIT_SLEEP": str(sleep),
        }
        self.run_ids: dict[str, str] = {}
        self.kills = 0
        self.stranded = 0  # kills that left a lease behind

    def submit(self, agent: str, token: str, *kill_points: str) -> None:
        for point in kill_points:
            (self.plan / f"{token}@{point}").touch()
        run, _ = submit_run(
            self.runtime.backends,
            NewRun(tenant_id="default", agent=agent, input=token),
            max_attempts=5,
        )
        self.run_ids[token] = run.id

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(HOMEO), "worker"], env={**self.env, **env}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def leases_of(self, pid: int) -> int:
        """Jobs leased by the worker process `pid` (lease owners are host:pid:...)."""
        database = self.runtime.backends.shared
        if database is None:  # the queue is on Redis: read its leases there
            storage = self.runtime.backends.queue.storage
            leased = storage.client.zrange(storage.prefix + "leases", 0, -1)
            owners = [storage.client.hget(f"{storage.prefix}job:{job_id}", "lease_owner")
                      for job_id in leased]
            return sum(1 for owner in owners if owner and f":{pid}:" in owner)
        with database.read() as db:
            row = db.execute(
                database.sql("SELECT COUNT(*) AS n FROM jobs WHERE status = 'leased'"
                             " AND lease_owner LIKE ?"), (f"%:{pid}:%",),
            ).fetchone()
        return int(row["n"])

    def kill_while_leased(self, worker: subprocess.Popen[bytes]) -> bool:
        """Freeze the worker; if it holds a lease, SIGKILL it (the lease is then
        certainly left behind), else let it go on. Whether it was killed."""
        worker.send_signal(signal.SIGSTOP)
        wait_until(lambda: _stopped(worker.pid), "the worker to stop")
        if self.leases_of(worker.pid) == 0:
            worker.send_signal(signal.SIGCONT)
            return False
        worker.kill()
        worker.wait()
        self.stranded += 1
        return True

    def runs(self) -> dict[str, object]:
        store = self.runtime.backends.store
        return {token: store.get_run("default", run_id) for token, run_id in self.run_ids.items()}

    def all_final(self) -> bool:
        return all(run.is_final for run in self.runs().values())

    def drive(self, random_kills: int = 0, rng: random.Random | None = None, *,
              approve: bool = False) -> None:
        """Keep one worker alive (restarting it when it dies) until every run is
        final; meanwhile SIGKILL it `random_kills` times at random moments. With
        `approve`, a person approves every call a run waits for."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        worker = self.start_worker()
        next_kill = time.monotonic() + (rng.uniform(0.8, 1.6) if rng else 1e9)
        try:
            while not self.all_final():
                if approve:
                    self.approve_waiting()
                assert time.monotonic() < deadline, f"runs not final: {self.runs()}"
                if worker.poll() is not None:
                    if worker.returncode != -signal.SIGKILL:
                        raise AssertionError(worker.stderr.read().decode()[-2000:])
                    self.kills += 1
                    worker = self.start_worker()
                elif random_kills and time.monotonic() >= next_kill:
                    next_kill = time.monotonic() + rng.uniform(0.2, 0.8)
                    if self.kill_while_leased(worker):
                        random_kills -= 1
                        continue
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()

    def approve_waiting(self) -> None:
        from homeo.engine.waits import RunNotWaiting, answer

        for run in self.runs().values():
            if run.status == "waiting":
                with contextlib.suppress(RunNotWaiting):
                    answer(self.runtime.backends, run, "approval", {"approved": True})

    def written(self) -> Counter[str]:
        return Counter(self.lines.read_text().split())

    def executed(self) -> Counter[str]:
        return Counter(line.split()[0] for line in self.executions.read_text().splitlines())

    def executing_pids(self) -> set[str]:
        return {line.split()[1] for line in self.executions.read_text().splitlines()}

    def close(self) -> None:
        self.runtime.backends.close()
        sys.path.remove(str(SUPPORT))


@pytest.fixture(params=[
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
])
def harness_factory(request: pytest.FixtureRequest, tmp_path: Path):
    """Harnesses on SQLite, on PostgreSQL, and on a SQLite store with the queue on Redis."""
    url, queue_url = f"sqlite:///{tmp_path / 'homeo.db'}", ""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    elif request.param == "redis":
        queue_url = request.getfixturevalue("redis_url")
    made: list[Harness] = []

    def make(sleep: float = 0.0) -> Harness:
        made.append(Harness(tmp_path, url, sleep, queue_url))
        return made[-1]

    yield make
    for harness in made:
        harness.close()


@pytest.mark.slow
def test_kills_at_chosen_points(harness_factory) -> None:
    harness = harness_factory()
    harness.submit("writer", "w-clean")
    harness.submit("writer", "w-model0", "model:0")  # before the first step
    harness.submit("writer", "w-model1", "model:1")  # after a tool step's checkpoint
    harness.submit("writer", "w-model3", "model:3")  # after the last tool's checkpoint
    harness.submit("writer", "w-before2", "before:2")  # during a non-idempotent tool
    harness.submit("writer", "w-after2", "after:2")  # side effect done, not checkpointed
    harness.submit("marker", "m-before2", "before:2")  # during an idempotent tool
    harness.submit("marker", "m-after2", "after:2")
    harness.submit("marker", "m-twice", "model:1", "after:3")
    harness.drive()

    runs = harness.runs()
    status = {token: run.status for token, run in runs.items()}
    assert status == {
        "w-clean": "succeeded", "w-model0": "succeeded", "w-model1": "succeeded",
        "w-model3": "succeeded", "w-before2": "failed", "w-after2": "failed",
        "m-before2": "succeeded", "m-after2": "succeeded", "m-twice": "succeeded",
    }
    assert harness.kills == 9 and not any(harness.plan.iterdir())  # every point was reached
    written = harness.written()
    assert max(written.values()) == 1, f"a side effect happened twice: {written}"
    for token in ("w-clean", "w-model0", "w-model1", "w-model3"):
        assert [written[f"{token}:{n}"] for n in (1, 2, 3)] == [1, 1, 1]
        assert runs[token].output == f"wrote 3 lines for {token}"
    # A non-idempotent tool interrupted mid-call is never run again: the run fails.
    assert [written["w-before2:1"], written["w-before2:2"], written["w-before2:3"]] == [1, 0, 0]
    assert [written["w-after2:1"], written["w-after2:2"], written["w-after2:3"]] == [1, 1, 0]
    assert "not marked idempotent" in runs["w-after2"].error
    assert harness.executed()["w-after2:2"] == 1
    # An idempotent tool interrupted mid-call is run again, and the run succeeds.
    marks = {path.name for path in harness.marks.iterdir()}
    for token in ("m-before2", "m-after2", "m-twice"):
        assert {f"{token}:{n}" for n in (1, 2, 3)} <= marks
    executed = harness.executed()
    assert executed["m-before2:2"] == 2 and executed["m-after2:2"] == 2
    assert executed["m-twice:3"] == 2 and executed["m-twice:1"] == 1
    steps = harness.runtime.backends.store.list_steps("default", runs["m-after2"].id)
    assert [s.attempts for s in steps if s.kind == "tool"] == [1, 2, 1]
    assert harness.runtime.backends.queue.stats()["lease_expiries"] >= 9


@pytest.mark.slow
def test_random_kills_never_lose_or_repeat_work(harness_factory) -> None:
    harness = harness_factory(sleep=0.15)
    rng = random.Random(20261123)
    for index in range(16):
        harness.submit("writer" if index % 2 else "marker", f"r{index}")
    harness.drive(random_kills=6, rng=rng)

    runs = harness.runs()
    assert all(run.status in ("succeeded", "failed") for run in runs.values())
    written = harness.written()
    assert max(written.values(), default=1) == 1, f"a side effect happened twice: {written}"
    marks = {path.name for path in harness.marks.iterdir()}
    for token, run in runs.items():
        if run.status != "succeeded":
            continue
        if run.agent == "writer":
            assert [written[f"{token}:{n}"] for n in (1, 2, 3)] == [1, 1, 1]
        else:
            assert {f"{token}:{n}" for n in (1, 2, 3)} <= marks
    # Runs are given up only for their own reasons: the markers' tools may run
    # again, so every one of them succeeds however often its worker died.
    assert {run.status for run in runs.values() if run.agent == "marker"} == {"succeeded"}
    # Every kill left a lease behind, and that work was taken up again.
    assert harness.stranded == 6 and harness.kills == 6
    assert harness.runtime.backends.queue.stats()["lease_expiries"] >= 6


@pytest.mark.slow
def test_a_stale_worker_woken_after_its_lease_stops_quietly(harness_factory) -> None:
    """SIGSTOP a worker inside a step past its lease; another worker takes the run
    over; SIGCONT the first. It must not write to the run, nor burn an attempt."""
    harness = harness_factory()
    harness.submit("marker", "s")
    stale = harness.start_worker()
    hold_stale = harness.plan / f"s@hold:2:{stale.pid}"
    hold_stale.touch()
    wait_until(lambda: f"s:2 {stale.pid}" in harness.executions.read_text(), "the step")
    stale.send_signal(signal.SIGSTOP)
    job = harness.runtime.backends.queue.find("default", f"run:{harness.run_ids['s']}")
    wait_until(lambda: harness.runtime.backends.queue.get("default", job.id)
               .lease_expires_at < time.time(), "the lease to lapse")
    owner = harness.start_worker()
    hold_owner = harness.plan / f"s@hold:2:{owner.pid}"
    hold_owner.touch()
    try:
        wait_until(lambda: f"s:2 {owner.pid}" in harness.executions.read_text(),
                   "the new owner to redo the step")
        hold_stale.unlink()  # the stale worker's step returns as soon as it wakes
        stale.send_signal(signal.SIGCONT)
        wait_until(lambda: harness.leases_of(stale.pid) == 0 and _log_has(stale, "lease lost"),
                   "the stale worker to stop")
        hold_owner.unlink()
        wait_until(harness.all_final, "the run to end")
    finally:
        for worker in (stale, owner):
            worker.send_signal(signal.SIGCONT)
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(timeout=60) for worker in (stale, owner)]
    run = harness.runs()["s"]
    assert (run.status, run.output) == ("succeeded", "wrote 3 lines for s"), run.error
    steps = harness.runtime.backends.store.list_steps("default", run.id)
    assert [(s.kind, s.status) for s in steps] == [("model", "succeeded"), ("tool", "succeeded")] * 3 + [("model", "succeeded")]
    assert [s.attempts for s in steps if s.kind == "tool"] == [1, 2, 1]
    job = harness.runtime.backends.queue.get("default", job.id)
    assert job.status == "done" and job.attempts == 2  # the stale worker burned none
    assert codes == [0, 0]
    errors = _stderr[stale.pid]
    assert "crashed" not in errors and "Traceback" not in errors, errors


_stderr: dict[int, str] = {}


def _log_has(worker: subprocess.Popen[bytes], text: str) -> bool:
    """Whether the worker's log so far says `text` (read without blocking)."""
    import fcntl

    fcntl.fcntl(worker.stderr, fcntl.F_SETFL, os.O_NONBLOCK)
    chunk = worker.stderr.read()
    if chunk:
        _stderr[worker.pid] = _stderr.get(worker.pid, "") + chunk.decode(errors="replace")
    return text in _stderr.get(worker.pid, "")


def _stopped(pid: int) -> bool:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state in ("T", "t")


def wait_until(condition, what: str, deadline: float = DEADLINE_SECONDS) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("queue", ["postgres", pytest.param("redis", marks=pytest.mark.redis)])
def test_two_workers_on_postgres_never_run_a_job_twice(
    request: pytest.FixtureRequest, queue: str, tmp_path: Path, postgres_url: str
) -> None:
    """Two worker processes, the store on PostgreSQL and the queue in it or on Redis."""
    queue_url = request.getfixturevalue("redis_url") if queue == "redis" else ""
    harness = Harness(tmp_path, postgres_url, queue_url=queue_url)
    try:
        for index in range(150):
            harness.submit("writer", f"p{index}")
        harness.env["HOMEO_WORKERS"] = "2"
        workers = [harness.start_worker() for _ in range(2)]
        deadline = time.monotonic() + DEADLINE_SECONDS
        try:
            while not harness.all_final():
                assert time.monotonic() < deadline, "runs not final in time"
                assert all(w.poll() is None for w in workers), "a worker died"
                time.sleep(0.1)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=20)
        assert {run.status for run in harness.runs().values()} == {"succeeded"}
        written = harness.written()
        assert len(written) == 450 and set(written.values()) == {1}
        assert len(harness.executing_pids()) == 2  # both processes did work
    finally:
        harness.close()


def _waiting(harness: Harness) -> bool:
    return all(run.status == "waiting" for run in harness.runs().values())


@pytest.mark.slow
def test_waiting_runs_survive_kills_and_each_approved_call_runs_once(harness_factory) -> None:
    harness = harness_factory()
    harness.submit("gated-writer", "g-plain")
    harness.submit("gated-marker", "g-mark", "before:1")  # dies inside the approved tool
    harness.submit("gated-writer", "g-after", "after:1")  # dies after its side effect
    worker = harness.start_worker()
    try:
        # Waiting runs hold no lease (the worker lets each job go right after
        # its run starts waiting): SIGKILL the worker while they wait.
        wait_until(lambda: _waiting(harness) and harness.leases_of(worker.pid) == 0,
                   "the runs to wait for approval, holding no lease")
        worker.kill()
        worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert _waiting(harness) and harness.written() == Counter()
    queue = harness.runtime.backends.queue  # no job is queued or leased for a waiting run
    jobs = [queue.find("default", run_job_key(run)) for run in harness.runs().values()]
    assert [job.status for job in jobs] == ["done"] * 3
    harness.drive(approve=True)

    runs = harness.runs()
    assert {token: run.status for token, run in runs.items()} == {
        "g-plain": "succeeded", "g-mark": "succeeded", "g-after": "failed"}
    assert harness.kills == 2 and not any(harness.plan.iterdir())
    written = harness.written()
    assert max(written.values()) == 1, f"a side effect happened twice: {written}"
    assert [written[f"g-plain:{n}"] for n in (1, 2, 3)] == [1, 1, 1]
    assert runs["g-plain"].output == "wrote 3 lines for g-plain"
    assert written["g-after:1"] == 1 and "not marked idempotent" in runs["g-after"].error
    assert harness.executed()["g-mark:1"] == 2  # idempotent: run again after the kill
    assert {f"g-mark:{n}" for n in (1, 2, 3)} <= {p.name for p in harness.marks.iterdir()}
    # Every call waited for its approval: the steps show a wait before each call.
    steps = harness.runtime.backends.store.list_steps("default", runs["g-plain"].id)
    waits = [s for s in steps if isinstance(s.output, dict) and "waiting" in s.output]
    assert len(waits) == 3 and runs["g-plain"].wakes == 3


@pytest.mark.slow
def test_sub_agents_survive_kills_in_the_parent_and_in_the_child(harness_factory) -> None:
    harness = harness_factory()
    harness.submit("boss", "b-clean")
    harness.submit("boss", "b-before", "model:0")  # before the parent starts its child
    harness.submit("boss", "b-child")
    (harness.plan / "b-child.child@model:1").touch()  # inside the child run
    harness.submit("boss", "b-tool")
    (harness.plan / "b-tool.child@after:2").touch()  # in the child's side effect
    harness.submit("boss", "b-resume", "model:1")  # the child ended; the parent resuming
    harness.drive()

    runs = harness.runs()
    store = harness.runtime.backends.store
    assert not any(harness.plan.iterdir()), "a kill point was never reached"
    assert harness.kills == 4, harness.executions.read_text()
    written = harness.written()
    assert max(written.values()) == 1, f"a side effect happened twice: {written}"
    for token, run in runs.items():
        (child,) = store.child_runs("default", run.id)  # never a second child
        assert (child.agent, child.input) == ("writer", f"{token}.child")
        if token == "b-tool":  # the child's non-idempotent tool died mid-call
            assert child.status == "failed" and "not marked idempotent" in child.error
            assert run.status == "succeeded"
            assert run.output.startswith(f"boss got: error: agent 'writer' (run {child.id})"
                                         " failed")
            continue
        assert (run.status, child.status) == ("succeeded", "succeeded"), (run, child)
        assert run.output == f"boss got: wrote 3 lines for {token}.child"
        assert [written[f"{token}.child:{n}"] for n in (1, 2, 3)] == [1, 1, 1]
