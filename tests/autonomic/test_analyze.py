"""Monitor and Analyze on real signals: a real queue filled over time, jobs
whose workers die, runs that fail, a `homeo worker` process killed, model
deployments behind a fault-injecting server on 127.0.0.1. Every observation
is made at an injected time; baselines learn from one sample every 5 s."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from homeo.autonomic.actuators import Actuators
from homeo.autonomic.analyze import Analysis, Analyzer, Baseline, Thresholds
from homeo.autonomic.control import ControlState
from homeo.autonomic.execute import Executor, Safety
from homeo.autonomic.loop import AutonomicLoop, status
from homeo.autonomic.monitor import Monitor
from homeo.autonomic.plan import Planner, Situation
from homeo.backends import Backends, open_backends
from homeo.config import Settings
from homeo.llm.base import Message, ModelError
from homeo.llm.resolve import ModelCatalog
from homeo.store.models import NewRun, WorkerRecord

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
from faultserver import FaultServer, Reply, error, fault_server  # noqa: E402

T0 = 1_800_000_000.0
HOMEO = Path(sys.executable).parent / "homeo"
DEADLINE_SECONDS = 120


def kinds(analysis: Analysis) -> dict[tuple[str, str], float]:
    return {(d.kind, d.subject): d.confidence for d in analysis.diagnoses}


def test_a_robust_baseline_flags_outliers_and_adapts_to_a_new_level() -> None:
    baseline = Baseline(samples=20, min_samples=10, every_seconds=5, noise=0.01)
    for index in range(10):
        assert baseline.z(1.0) is None  # not enough samples yet
        baseline.offer(1.0 + 0.01 * (index % 3), T0 + 5 * index)
    assert abs(baseline.z(1.01)) < 3.5
    assert baseline.z(3.0) > 3.5 and baseline.z(-1.0) < -3.5
    baseline.offer(50.0, T0 + 46)  # under 5 s after the last sample: not taken
    assert len(baseline.values) == 10
    for index in range(11):  # a lasting change: after half the window it is normal
        baseline.offer(3.0, T0 + 50 + 5 * index)
    assert abs(baseline.z(3.0)) < 3.5


def test_a_steady_queue_is_fine_and_a_filling_one_is_a_growing_backlog(
    backends: Backends,
) -> None:
    monitor = Monitor(backends.store, backends.queue)
    analyzer = Analyzer()
    # Twelve jobs wait and are served as fast as they come: a steady backlog.
    for index in range(12):
        backends.queue.enqueue("acme", "run", {"n": index}, now=T0)
    for second in range(0, 120, 5):
        job = backends.queue.claim("w#1", 30, now=T0 + second)
        backends.queue.complete(job.id, "w#1", now=T0 + second)
        backends.queue.enqueue("acme", "run", {"at": second}, now=T0 + second)
        steady = analyzer.analyze(monitor.observe(T0 + second))
        assert "backlog_growing" not in {d.kind for d in steady.diagnoses}
    # Then nothing is served and 5 jobs a second arrive.
    found = None
    for second in range(120, 200):
        for index in range(5):
            backends.queue.enqueue("acme", "run", {"late": index}, now=T0 + second)
        analysis = analyzer.analyze(monitor.observe(T0 + second))
        if any(d.kind == "backlog_growing" for d in analysis.diagnoses):
            found = (second, next(d for d in analysis.diagnoses if d.kind == "backlog_growing"))
            break
    assert found is not None, "a queue filling for 80s was never diagnosed"
    second, diagnosis = found
    assert second <= 160  # within the trend window (30 s) plus a few observations
    signals = {e["signal"] for e in diagnosis.evidence}
    assert {"queue.due", "queue.oldest_due_age_seconds"} <= signals
    assert any("z" in e for e in diagnosis.evidence)  # the due count is off its baseline
    assert diagnosis.confidence >= 0.6


def test_a_tenant_with_most_of_a_deep_shared_queue_is_flooding(backends: Backends) -> None:
    for index in range(5):
        backends.queue.enqueue("calm", "run", {"n": index}, now=T0)
    for index in range(45):
        backends.queue.enqueue("noisy", "run", {"n": index}, now=T0)
    analysis = Analyzer().analyze(Monitor(backends.store, backends.queue).observe(T0 + 1))

    [flood] = [d for d in analysis.diagnoses if d.kind == "tenant_flooding"]
    assert flood.subject == "noisy"
    assert "45 of the 50 due jobs (90%)" in flood.summary
    assert flood.evidence[1]["value"] == 0.9 and 0.5 < flood.confidence < 0.9


def test_a_job_that_took_down_every_worker_is_poison(backends: Backends) -> None:
    queue, store = backends.queue, backends.store
    poison, _ = queue.enqueue("acme", "run", {"poison": True}, now=T0)
    for number, at in enumerate((T0, T0 + 11, T0 + 22), start=1):
        store.beat_worker(WorkerRecord(id=f"w{number}", host="h", pid=number, slots=1,
                                       started_at=T0, last_seen=at))
        assert queue.claim(f"w{number}#1", 10, now=at).id == poison.id
    monitor, analyzer = Monitor(store, queue), Analyzer()

    # Two expiries, three workers known: suspicious, not yet every worker.
    [suspect] = [d for d in analyzer.analyze(monitor.observe(T0 + 23)).diagnoses
                 if d.kind == "poison_job"]
    assert suspect.subject == f"acme/{poison.id}" and suspect.confidence == 0.7
    store.forget_worker("w3")  # the last one stopped; two remain known
    [poison_job] = [d for d in analyzer.analyze(monitor.observe(T0 + 24)).diagnoses
                    if d.kind == "poison_job"]
    assert poison_job.confidence == 0.9
    assert "took down every worker" in poison_job.evidence[1]["rule"]


def test_a_job_held_beside_the_poison_one_in_every_death_is_not_blamed_yet(
        backends: Backends) -> None:
    queue, store = backends.queue, backends.store
    for index in range(2):
        queue.enqueue("acme", "run", {"n": index}, now=T0)
    monitor, analyzer = Monitor(store, queue), Analyzer()

    def blamed(at: float) -> list[str]:
        return [d.subject for d in analyzer.analyze(monitor.observe(at)).diagnoses
                if d.kind == "poison_job"]

    # Both were held by each worker that died (leases of 10 s that lapsed;
    # a lapse is counted when the job is claimed again).
    for worker, at in (("w1", T0), ("w2", T0 + 11)):
        for _ in range(2):
            assert queue.claim(f"{worker}#1", 10, now=at) is not None
    suspect = queue.claim("w3#1", 10, now=T0 + 22)  # then w3 dies holding one
    assert suspect is not None
    # Two deaths each: a tie, no blame yet.
    assert blamed(T0 + 23) == []
    # w3's death, counted at the next claims, breaks the tie.
    while queue.claim("w4#1", 60, now=T0 + 34) is not None:
        pass
    assert blamed(T0 + 35) == [f"acme/{suspect.id}"]


def test_a_job_whose_second_worker_died_holding_it_is_poison_before_it_is_claimed_again(
        backends: Backends) -> None:
    queue, store = backends.queue, backends.store
    for index in range(2):
        queue.enqueue("acme", "run", {"n": index}, now=T0)
    store.beat_worker(WorkerRecord(id="w1", host="h", pid=1, slots=1, started_at=T0,
                                   last_seen=T0))
    assert queue.claim("w1#1", 10, now=T0) is not None  # w1 dies holding one
    # The next claim puts it back (its first expiry) and w2 takes it, beside
    # a job that never went down with a worker.
    store.beat_worker(WorkerRecord(id="w2", host="h", pid=2, slots=2, started_at=T0,
                                   last_seen=T0 + 11))
    suspect = queue.claim("w2#1", 10, now=T0 + 11)
    bystander = queue.claim("w2#2", 10, now=T0 + 11)
    assert suspect is not None and bystander is not None and suspect.lease_expiries == 1
    analyzer = Analyzer(Thresholds(worker_stale_seconds=3.0))
    monitor = Monitor(store, queue)

    # w2 beats: nothing to blame.
    alive = analyzer.analyze(monitor.observe(T0 + 12)).diagnoses
    assert [d for d in alive if d.kind == "poison_job"] == []
    # w2's heartbeat goes stale: its death is the suspect's second, though
    # no claim has counted it yet; the diagnosis comes before worker_dead's,
    # so the job is quarantined before the dead worker's leases end.
    kinds = [(d.kind, d.subject) for d in analyzer.analyze(monitor.observe(T0 + 15)).diagnoses]
    assert ("poison_job", f"acme/{suspect.id}") in kinds
    assert ("poison_job", f"acme/{bystander.id}") not in kinds
    assert kinds.index(("poison_job", f"acme/{suspect.id}")) < kinds.index(("worker_dead", "w2"))
    [poison] = [d for d in analyzer.analyze(monitor.observe(T0 + 16)).diagnoses
                if d.kind == "poison_job"]
    assert [(e["signal"], e["value"]) for e in poison.evidence[:2]] == [
        ("job.lease_expiries", 1), ("job.holder_heartbeat_age_seconds", 5.0)]
    assert "its worker died or hung 2 times" in poison.summary


def test_sandboxed_tools_killed_for_memory_again_and_again_are_diagnosed(
    backends: Backends,
) -> None:
    store = backends.store
    monitor, analyzer = Monitor(store, backends.queue), Analyzer()

    def oom(at: float, ooms: int, runs: int) -> list:
        store.beat_worker(WorkerRecord(id="w1", host="h", pid=1, slots=2, started_at=T0,
                                       last_seen=at, sandbox_runs=runs, sandbox_ooms=ooms))
        return [d for d in analyzer.analyze(monitor.observe(at)).diagnoses
                if d.kind == "sandbox_oom"]

    assert oom(T0, 9, 9) == []  # before the first look: history
    assert oom(T0 + 1, 10, 12) == []  # one kill: could be one greedy run
    [found] = oom(T0 + 2, 11, 13)
    assert found.summary.startswith("2 of 4 sandboxed tool runs in the last 60s were killed")
    assert "HOMEO_SANDBOX_MEMORY" in found.summary
    # Nothing is planned for it: a limit is the operator's to raise.
    assert Planner().plan(found, Situation(), {}) is None
    assert oom(T0 + 70, 11, 20) == []  # the kills left the window


def test_sandboxes_hitting_their_time_limit_while_jobs_wait_are_hanging(
    backends: Backends,
) -> None:
    queue, store = backends.queue, backends.store
    monitor, analyzer = Monitor(store, queue), Analyzer()

    def beat(worker: str, at: float, *, in_use: int, timeouts: int, runs: int) -> None:
        store.beat_worker(WorkerRecord(id=worker, host="h", pid=1, slots=3, in_use=in_use,
                                       started_at=T0, last_seen=at, sandbox_runs=runs,
                                       sandbox_timeouts=timeouts))

    def hanging(at: float) -> list:
        seen = monitor.observe(at)
        return [seen, [d for d in analyzer.analyze(seen).diagnoses
                       if d.kind == "sandbox_hanging"]]

    # Counts from before the loop's first look are history, not news.
    beat("w1", T0, in_use=3, timeouts=5, runs=5)
    beat("w2", T0, in_use=3, timeouts=0, runs=0)
    for index in range(4):
        queue.enqueue("acme", "run", {"n": index}, now=T0)
    seen, found = hanging(T0 + 1)
    assert seen.value("sandbox.new_timeouts") == 0 and found == []

    # One more timeout in each process: two in the window, every slot busy, jobs due.
    beat("w1", T0 + 2, in_use=3, timeouts=6, runs=7)
    beat("w2", T0 + 2, in_use=3, timeouts=1, runs=1)
    seen, [found] = hanging(T0 + 3)
    assert (seen.value("sandbox.new_timeouts"), seen.value("sandbox.new_runs")) == (2, 3)
    assert seen.of("worker.sandbox_timeouts") == {"w1": 6, "w2": 1}
    assert found.subject == "" and "6 of 6 slots are busy and 4 jobs wait" in found.summary

    # Slots to spare: the hung sandboxes hold no one up.
    beat("w1", T0 + 4, in_use=1, timeouts=6, runs=7)
    assert hanging(T0 + 5)[1] == []
    # Busy again, but the timeouts left the window.
    beat("w1", T0 + 80, in_use=3, timeouts=6, runs=7)
    beat("w2", T0 + 80, in_use=3, timeouts=1, runs=1)
    assert hanging(T0 + 81)[1] == []
    # No job waits: nothing to make room for.
    beat("w1", T0 + 82, in_use=3, timeouts=9, runs=10)
    while queue.claim("w9#1", 60, now=T0 + 82) is not None:
        pass
    assert hanging(T0 + 83)[1] == []


def test_an_agent_whose_runs_start_failing_has_regressed(backends: Backends) -> None:
    store = backends.store
    monitor = Monitor(store, backends.queue, failure_window_seconds=60)
    analyzer = Analyzer()

    def finish(agent: str, status: str, at: float) -> None:
        run, _ = store.create_run(NewRun(tenant_id="acme", agent=agent, input="x"), now=at)
        store.transition_run("acme", run.id, status, allowed_from={"queued"}, now=at)

    # For two minutes one run in ten fails, for both agents.
    for second in range(0, 120, 5):
        for agent in ("steady", "flaky"):
            finish(agent, "failed" if second % 50 == 0 else "succeeded", T0 + second)
        assert "agent_regressed" not in {
            d.kind for d in analyzer.analyze(monitor.observe(T0 + second)).diagnoses}
    # Then every run of `flaky` fails.
    regressed = []
    for second in range(120, 240, 5):
        finish("steady", "succeeded", T0 + second)
        finish("flaky", "failed", T0 + second)
        regressed = [d for d in analyzer.analyze(monitor.observe(T0 + second)).diagnoses
                     if d.kind == "agent_regressed"]
        if regressed:
            break
    assert [d.subject for d in regressed] == ["acme/flaky"]
    assert any("z" in e for e in regressed[0].evidence)
    assert "usually" in regressed[0].summary


def test_rolling_a_regressed_agent_back_ends_the_diagnosis(backends: Backends) -> None:
    """Only runs of an agent's current version count: once the loop rolls it
    back, the failures of the version it left no longer hold the diagnosis."""
    store = backends.store
    good = store.put_agent("acme", "bot", {"name": "bot", "model": "m1"}, now=T0 - 10)
    bad = store.put_agent("acme", "bot", {"name": "bot", "model": "m2"}, now=T0 - 5)
    monitor = Monitor(store, backends.queue, failure_window_seconds=600)
    analyzer = Analyzer()
    executor = Executor(store, Planner(random.Random(1)),
                        Actuators(store, backends.queue, actor="autonomic:t"),
                        observer="t", safety=Safety(mode="on", settle_seconds=10.0))

    def finish(version: str, status: str, at: float) -> None:
        run, _ = store.create_run(NewRun(tenant_id="acme", agent="bot", input="x",
                                         agent_version=version), now=at)
        store.transition_run("acme", run.id, status, allowed_from={"queued"}, now=at)

    for second in range(8):
        finish(bad.version, "failed", T0 + second)
    regressed = analyzer.analyze(monitor.observe(T0 + 8))
    assert [(d.kind, d.subject) for d in regressed.diagnoses] == [("agent_regressed", "acme/bot")]
    executor.step(regressed, T0 + 8)
    assert store.get_agent("acme", "bot").version == good.version
    for second in range(9, 15):
        finish(good.version, "succeeded", T0 + second)
    later = analyzer.analyze(monitor.observe(T0 + 20))
    assert later.diagnoses == []
    assert monitor.observe(T0 + 20).value("agent.runs", "acme/bot") == 6
    executor.step(later, T0 + 20)
    [decision] = store.list_decisions()
    assert (decision.action, decision.outcome) == ("rollback_agent", "cleared")


def test_a_disk_below_its_threshold_is_under_pressure(backends: Backends, tmp_path: Path) -> None:
    monitor = Monitor(backends.store, backends.queue, data_dir=tmp_path)
    seen = monitor.observe(T0)
    free = seen.value("disk.free_bytes")
    assert free is not None and 0 < seen.value("disk.free_ratio") <= 1
    assert "disk_pressure" not in kinds(Analyzer(Thresholds(disk_free_bytes=free / 2,
                                                            disk_free_ratio=0)).analyze(seen))
    [pressure] = [d for d in Analyzer(Thresholds(disk_free_bytes=free * 2)).analyze(seen).diagnoses
                  if d.kind == "disk_pressure"]
    assert pressure.evidence[1]["value"] == free


def test_a_worker_that_grew_while_memory_is_tight_is_bloated(backends: Backends) -> None:
    mib = 2**20
    for worker, start, rss, last_seen in (("w-leaky", 100, 180, T0), ("w-fine", 100, 110, T0),
                                          ("w-stale", 100, 400, T0 - 60), ("w-old", 0, 0, T0)):
        backends.store.beat_worker(WorkerRecord(
            id=worker, host="box", pid=1, slots=2, started_at=T0 - 100, last_seen=last_seen,
            rss_bytes=rss * mib, rss_start_bytes=start * mib))
    seen = Monitor(backends.store, backends.queue).observe(T0)
    # A row without memory figures (an older homeo's worker) gives no signal.
    assert seen.of("worker.rss_growth_bytes") == {
        "w-leaky": 80 * mib, "w-fine": 10 * mib, "w-stale": 300 * mib}

    tight = Analyzer(Thresholds(worker_growth_bytes=64 * mib, memory_tight_ratio=1.01))
    [bloated] = [d for d in tight.analyze(seen).diagnoses if d.kind == "worker_bloated"]
    assert bloated.subject == "w-leaky"  # w-fine grew little, w-stale is not beating
    assert "180 MiB resident, 80 MiB more than when it started" in bloated.summary
    assert {e["signal"] for e in bloated.evidence} == {
        "worker.rss_growth_bytes", "memory.available_ratio", "worker.rss_bytes"}
    # With room to spare, growth alone is no diagnosis.
    roomy = Analyzer(Thresholds(worker_growth_bytes=64 * mib, memory_tight_ratio=0.0))
    assert "worker_bloated" not in {d.kind for d in roomy.analyze(seen).diagnoses}


# --- a worker process that dies ------------------------------------------------
@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    data = tmp_path / "data"
    env = {**os.environ, "HOMEO_DATA_DIR": str(data), "HOMEO_WORKER_HEARTBEAT_SECONDS": "0.2",
           "HOMEO_WORKERS": "2", "HOMEO_LOG_LEVEL": "warning"}
    process = subprocess.Popen([str(HOMEO), "worker"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        yield process, f"sqlite:///{data / 'homeo.db'}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_a_killed_worker_process_is_diagnosed_dead(
    worker_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, url = worker_process
    deadline = time.monotonic() + DEADLINE_SECONDS
    backends = None
    while time.monotonic() < deadline:
        if backends is None and url.removeprefix("sqlite:///") and Path(
                url.removeprefix("sqlite:///")).exists():
            try:
                backends = open_backends(url)
            except Exception:  # the worker is still migrating the new database
                backends = None
        if backends is not None and any(
                w.pid == process.pid and w.last_seen > w.started_at
                for w in backends.store.list_workers()):
            break
        assert process.poll() is None, "homeo worker exited"
        time.sleep(0.1)
    assert backends is not None, "homeo worker wrote no heartbeat row"
    try:
        process.send_signal(signal.SIGKILL)
        process.wait()
        [row] = [w for w in backends.store.list_workers() if w.pid == process.pid]
        assert row.slots == 2 and row.in_use == 0
        # Its resident memory, now and at its first heartbeat (a Python process: MiBs).
        assert row.rss_bytes > 2**20 and row.rss_start_bytes > 2**20
        monitor = Monitor(backends.store, backends.queue)
        analyzer = Analyzer(Thresholds(worker_stale_seconds=30))
        assert "worker_dead" not in {
            d.kind for d in analyzer.analyze(monitor.observe(row.last_seen + 5)).diagnoses}
        [dead] = [d for d in analyzer.analyze(monitor.observe(row.last_seen + 31)).diagnoses
                  if d.kind == "worker_dead"]
        assert dead.subject == row.id and dead.confidence == 0.7
        assert dead.evidence[0]["value"] == 31

        # Nothing supervises it: the loop forgets it, and the diagnosis ends.
        executor = Executor(backends.store, Planner(random.Random(1)),
                            Actuators(backends.store, backends.queue, actor="autonomic:t"),
                            observer="t", safety=Safety(mode="on", settle_seconds=5.0))
        executor.step(Analysis(row.last_seen + 31, [], [dead]), row.last_seen + 31)
        later = analyzer.analyze(monitor.observe(row.last_seen + 37))
        assert "worker_dead" not in {d.kind for d in later.diagnoses}
        executor.step(later, row.last_seen + 37)
        [decision] = backends.store.list_decisions()
        assert (decision.action, decision.outcome) == ("expire_leases", "cleared")
    finally:
        backends.close()


def test_a_worker_that_stops_cleanly_removes_its_row(tmp_path: Path) -> None:
    from homeo.runtime import Runtime

    runtime = Runtime.open(Settings(data_dir=tmp_path / "data", worker_heartbeat_seconds=0.05,
                                    poll_seconds=0.02))

    async def main() -> list[str]:
        worker = runtime.worker(concurrency=1)
        stop = asyncio.Event()
        serving = asyncio.create_task(worker.serve(stop))
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            rows = runtime.backends.store.list_workers()
            if rows and rows[0].last_seen > rows[0].started_at:
                break
            await asyncio.sleep(0.02)
        seen = [row.id for row in runtime.backends.store.list_workers()]
        assert seen == [worker.worker_id]
        stop.set()
        await serving
        return [row.id for row in runtime.backends.store.list_workers()]

    try:
        assert asyncio.run(main()) == []
    finally:
        asyncio.run(runtime.aclose())


# --- model deployments -----------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def provider() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


def catalog(server: FaultServer, clock: Clock | None = None) -> ModelCatalog:
    settings = Settings(models={"chat": [{"model": "openai:m", "name": "primary",
                                          "base_url": server.base_url}]},
                        router_retries=0, router_backoff_base_seconds=0.0,
                        router_attempt_timeout_seconds=10.0)
    return ModelCatalog(settings, clock=clock or time.monotonic)


async def ask(models: ModelCatalog, times: int) -> None:
    for _ in range(times):
        try:
            await models.get("chat").request([Message(role="user", content="hi")])
        except ModelError:
            pass  # the failure is what is measured


def test_a_provider_failing_some_calls_is_degraded_then_down(
    provider: FaultServer, backends: Backends,
) -> None:
    models = catalog(provider, Clock())
    monitor = Monitor(backends.store, backends.queue, providers=models.provider_stats)

    async def scenario() -> tuple[Analysis, Analysis]:
        # 1 call in 4 fails: the breaker (50%) stays closed.
        provider.script = [error(500, "boom"), Reply(), Reply(), Reply()] * 2
        await ask(models, 8)
        degraded = Analyzer().analyze(monitor.observe(T0))
        provider.default = error(503, "down")
        provider.script = []
        await ask(models, 8)
        down = Analyzer().analyze(monitor.observe(T0 + 1))
        await models.aclose()
        return degraded, down

    degraded, down = asyncio.run(scenario())
    assert kinds(degraded) == {("provider_degraded", "primary"): 0.588}
    [diagnosis] = degraded.diagnoses
    assert diagnosis.evidence[0] == {"signal": "provider.error_rate", "subject": "primary",
                                     "value": 0.25, "rule": ">= 0.2"}
    assert kinds(down) == {("provider_down", "primary"): 0.95}
    assert down.diagnoses[0].evidence[0]["rule"] == "2 (open)"


def test_a_provider_slower_than_its_baseline_is_slow(
    provider: FaultServer, backends: Backends,
) -> None:
    models = catalog(provider)
    monitor = Monitor(backends.store, backends.queue, providers=models.provider_stats)
    analyzer = Analyzer()

    async def scenario() -> list[Analysis]:
        analyses = []
        provider.default = Reply()
        for step in range(13):  # a minute of fast answers, observed every 5 s
            await ask(models, 1)
            analyses.append(analyzer.analyze(monitor.observe(T0 + 5 * step)))
        provider.default = Reply(delay=0.3)
        await ask(models, 40)  # the window's P95 is now a slow call's
        analyses.append(analyzer.analyze(monitor.observe(T0 + 70)))
        await models.aclose()
        return analyses

    *fast, slow = asyncio.run(scenario())
    assert all("provider_slow" not in {d.kind for d in a.diagnoses} for a in fast)
    [diagnosis] = [d for d in slow.diagnoses if d.kind == "provider_slow"]
    assert diagnosis.subject == "primary"
    p95 = diagnosis.evidence[1]["value"]
    assert p95 >= 0.3 and diagnosis.evidence[0]["z"] >= 3.5


def test_a_breaker_the_loop_holds_open_is_judged_to_have_helped(backends: Backends) -> None:
    """The deployment keeps failing, but once the loop holds its breaker open
    nobody calls it: its last failure ages past `provider_recent_seconds`, the
    diagnosis clears and the decision counts as having helped. After the hold
    period the loop lets go; the next call fails, and the loop holds it again."""
    clock = Clock()
    store = backends.store

    def loop_now() -> float:
        return T0 + clock.now

    with fault_server() as flaky, fault_server() as steady:
        settings = Settings(
            models={"chat": [{"model": "openai:m", "name": "flaky", "base_url": flaky.base_url},
                             {"model": "openai:m", "name": "steady",
                              "base_url": steady.base_url}]},
            router_retries=0, router_backoff_base_seconds=0.0,
            router_attempt_timeout_seconds=10.0, breaker_min_calls=4,
            breaker_cooldown_seconds=2.0, breaker_window_seconds=8.0)
        control = ControlState(store, refresh_seconds=0.0, clock=loop_now)
        models = ModelCatalog(settings, clock=clock, rng=random.Random(5),
                              held_breaker=control.breaker)
        executor = Executor(
            store, Planner(random.Random(3)),
            Actuators(store, backends.queue, actor="autonomic:loop1"), observer="loop1",
            safety=Safety(mode="on", settle_seconds=5.0, hold_seconds=10.0),
            aliases=lambda: {"chat": ["flaky", "steady"]})
        loop = AutonomicLoop(
            Monitor(store, backends.queue, providers=models.provider_stats),
            Analyzer(Thresholds(provider_recent_seconds=3.0)), store, observer="loop1",
            executor=executor)

        async def scenario() -> list[tuple[float, set[str], list[tuple[str, str, str | None]]]]:
            flaky.default = error(500, "down")
            steps = []
            for _ in range(60):  # a step a second, two requests between steps
                await ask(models, 2)
                analysis = loop.step(loop_now())
                steps.append((clock.now - 1000.0, {d.kind for d in analysis.diagnoses},
                              [(d.action, d.status, d.outcome)
                               for d in sorted(store.list_decisions(limit=100),
                                               key=lambda d: d.at)]))
                clock.now += 1.0
            await models.aclose()
            return steps

        steps = asyncio.run(scenario())
        calls_to_flaky = len(flaky.received)

    # Shifting weight away never helps: flaky still gets calls, and its own
    # breaker's probes, and none succeeds. Holding the breaker open stops the
    # calls: cleared, and undone only after the hold period; then the first
    # call fails again and the loop holds it again.
    decided = steps[-1][2]
    shifts = [outcome for action, _, outcome in decided if action == "shift_weight"]
    holds = [(status, outcome) for action, status, outcome in decided
             if action == "open_breaker"]
    assert set(shifts) <= {"persisted"}, decided
    assert holds[0] == ("reverted", "cleared") and len(holds) >= 2, decided
    assert {outcome for _, outcome in holds} <= {"cleared", None}, decided
    assert store.decision_tally("provider_down") == {
        **({"shift_weight": (0, len(shifts))} if shifts else {}),
        "open_breaker": (sum(outcome == "cleared" for _, outcome in holds), 0)}
    # While it was held, nothing was diagnosed once its last failure was 3 s
    # old (its own breaker sat half-open, no probe let through).
    held = next(index for index, step in enumerate(steps)
                if any(action == "open_breaker" for action, _, _ in step[2]))
    assert steps[held + 4][1] == set(), steps[held:held + 5]
    assert calls_to_flaky <= 30, calls_to_flaky


# --- the loop and what it keeps -----------------------------------------------------
def test_the_loop_keeps_signals_and_diagnoses_and_status_hides_other_tenants(
    backends: Backends,
) -> None:
    store, queue = backends.store, backends.queue
    loop = AutonomicLoop(Monitor(store, queue), Analyzer(), store, observer="test",
                         record_every_seconds=5, keep_signals_seconds=60)
    for index in range(45):
        queue.enqueue("noisy", "run", {"n": index}, now=T0)
    for index in range(5):
        queue.enqueue("calm", "run", {"n": index}, now=T0)
    loop.step(T0 + 1)

    everything = status(store, now=T0 + 2)
    assert [(d["kind"], d["subject"]) for d in everything["diagnoses"]] == [
        ("tenant_flooding", "noisy")]
    due = {(s["name"], s["subject"]): s["value"] for s in everything["signals"]}
    assert due[("queue.due", "")] == 50 and due[("queue.due_by_tenant", "noisy")] == 45
    calm = status(store, now=T0 + 2, tenant_id="calm")
    assert calm["diagnoses"] == []
    assert {s["subject"] for s in calm["signals"] if s["name"] == "queue.due_by_tenant"} == {
        "calm"}
    assert ("queue.due", "") in {(s["name"], s["subject"]) for s in calm["signals"]}

    # The flood is served: the diagnosis clears and stays on record as cleared.
    while (job := queue.claim("w#1", 30, now=T0 + 3)) is not None:
        queue.complete(job.id, "w#1", now=T0 + 3)
    loop.step(T0 + 4)
    later = status(store, now=T0 + 5)
    assert later["diagnoses"] == []
    assert [(d["kind"], d["cleared_at"]) for d in later["cleared"]] == [
        ("tenant_flooding", T0 + 4)]
    # Signals are kept every 5 s: the step at T0 + 4 kept none, so T0 + 1's are newest.
    assert {s["at"] for s in later["signals"]} == {T0 + 1}
