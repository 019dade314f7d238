"""One chaos run: a homeo of its own on a temporary data directory, a steady
workload, one fault, and what came of it.

For each loop mode it starts, all on 127.0.0.1: two fault servers (the
`chaos` alias's deployments `flaky` and `steady`), `workers` `homeo worker`
processes on one SQLite database, with the autonomic loop acting
(HOMEO_AUTONOMIC=on, HOMEO_AUTONOMIC_ACT=on) or off, and an agent that makes
one model call. It submits `rate` runs a second, at most `max_runs` and for
at most `warmup + fault` seconds, injects the scenario's fault after the
warm-up, then waits (up to `drain_seconds`) for every run to end. It stops
only the processes it started, by their PIDs, and removes its directory.

The tuning shortens homeo's clocks (heartbeats, breaker cooldown, loop
interval) so a scenario plays out in tens of seconds; both modes get the
same tuning, so they differ only in the loop.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from homeo.autonomic.chaos.faultserver import FaultServer, Reply, completion
from homeo.autonomic.chaos.measure import FINAL, REFUSED, ModeResult, RunOutcome, Slo, summarize
from homeo.autonomic.chaos.scenarios import Scenario
from homeo.backends import Backends, open_backends
from homeo.engine.submit import submit_run
from homeo.sandbox.cgroups import RunCgroup
from homeo.sandbox.limits import Limits
from homeo.store.disk import DiskFloor, DiskFull
from homeo.store.models import NewRun

TENANT = "chaos"
AGENT = "chaos"
AGENT_YAML = """\
name: chaos
description: One model call per run, the chaos harness's workload.
model: chaos
system_prompt: Answer in one word.
max_steps: 1
max_tokens: 16
timeouts: {step: 60, run: 120}
"""


UNLIMITED_BYTES = 64 * 2**30


class ChaosError(Exception):
    """The harness could not set up or run its homeo (says what failed)."""


@dataclass(frozen=True)
class Tuning:
    warmup_seconds: float = 6.0
    fault_seconds: float = 24.0
    rate: float = 3.0  # runs submitted a second
    max_runs: int = 120
    drain_seconds: float = 120.0
    workers: int = 2  # worker processes
    slots: int = 3  # runs each worker process runs at once
    provider_delay_seconds: float = 1.0  # a healthy answer's time
    attempt_timeout_seconds: float = 1.5
    lease_seconds: float = 30.0
    worker_stale_seconds: float = 3.0
    breaker_cooldown_seconds: float = 2.0
    loop_interval_seconds: float = 0.5
    # An action's outcome is judged this long after it (HOMEO_AUTONOMIC_SETTLE_SECONDS):
    # short, so that within one run an action that did not help is undone and Plan
    # may try another.
    settle_seconds: float = 5.0
    # How far back each router's per-provider call stats (and breaker) look,
    # and how Analyze samples baselines: homeo's defaults unless a scenario
    # needs a baseline within its warm-up (provider-slow).
    stats_window_seconds: float = 60.0
    baseline_every_seconds: float = 5.0
    baseline_min_samples: int = 12
    sandbox_timeout_seconds: float = 10.0  # a sandboxed tool's wall-clock limit
    startup_seconds: float = 120.0  # for the workers to come up
    slo: Slo = field(default_factory=Slo)
    # A filesystem of this size of its own for the data directory (a tmpfs the
    # harness mounts; needs root), for faults that fill it. None: a folder.
    data_disk_bytes: int | None = None
    min_free_disk_bytes: int = 0  # HOMEO_MIN_FREE_DISK
    disk_pressure_bytes: int | None = None  # HOMEO_AUTONOMIC_DISK_FREE; None: homeo's
    # The workers in a memory cgroup of their own (root only) whose limit, once
    # they are up, is what they use then plus this. None: no group.
    memory_headroom_bytes: int | None = None
    worker_growth_bytes: int | None = None  # HOMEO_AUTONOMIC_WORKER_GROWTH; None: homeo's

    def environment(self, loop_on: bool) -> dict[str, str]:
        return {
            "HOMEO_WORKERS": str(self.slots),
            "HOMEO_LEASE_SECONDS": str(self.lease_seconds),
            "HOMEO_POLL_SECONDS": "0.1",
            "HOMEO_WORKER_HEARTBEAT_SECONDS": "0.5",
            "HOMEO_WORKER_STALE_SECONDS": str(self.worker_stale_seconds),
            "HOMEO_CONTROL_REFRESH_SECONDS": "0.5",
            "HOMEO_ROUTER_RETRIES": "1",
            "HOMEO_ROUTER_BACKOFF_BASE_SECONDS": "0.2",
            "HOMEO_ROUTER_ATTEMPT_TIMEOUT_SECONDS": str(self.attempt_timeout_seconds),
            "HOMEO_BREAKER_MIN_CALLS": "4",
            "HOMEO_BREAKER_COOLDOWN_SECONDS": str(self.breaker_cooldown_seconds),
            "HOMEO_AUTONOMIC": "on" if loop_on else "off",
            "HOMEO_AUTONOMIC_ACT": "on",
            "HOMEO_AUTONOMIC_INTERVAL_SECONDS": str(self.loop_interval_seconds),
            "HOMEO_AUTONOMIC_SETTLE_SECONDS": str(self.settle_seconds),
            "HOMEO_AUTONOMIC_SEED": "13",
            "HOMEO_BREAKER_WINDOW_SECONDS": str(self.stats_window_seconds),
            "HOMEO_AUTONOMIC_BASELINE_EVERY_SECONDS": str(self.baseline_every_seconds),
            "HOMEO_AUTONOMIC_BASELINE_MIN_SAMPLES": str(self.baseline_min_samples),
            "HOMEO_SANDBOX_TIMEOUT": f"{self.sandbox_timeout_seconds:g}s",
            "HOMEO_MIN_FREE_DISK": str(self.min_free_disk_bytes),
            **({} if self.disk_pressure_bytes is None
               else {"HOMEO_AUTONOMIC_DISK_FREE": str(self.disk_pressure_bytes)}),
            **({} if self.worker_growth_bytes is None
               else {"HOMEO_AUTONOMIC_WORKER_GROWTH": str(self.worker_growth_bytes)}),
            "HOMEO_DEFAULT_TENANT": TENANT,
            "HOMEO_LOG_LEVEL": "warning",
        }


@dataclass
class System:
    """What a scenario's fault acts on."""

    flaky: FaultServer
    steady: FaultServer
    workers: list[subprocess.Popen[bytes]]
    backends: Backends
    tuning: Tuning
    data_dir: Path
    # Runs the fault itself submitted, (tenant, run id): accepted work that
    # must not be lost either, counted apart from the steady workload.
    others: list[tuple[str, str]] = field(default_factory=list)
    agent: str = AGENT  # what the steady workload submits (a fault may change it)


def run_scenario(scenario: Scenario, loops: Sequence[bool], tuning: Tuning, *,
                 homeo_command: Sequence[str], base_env: Mapping[str, str],
                 progress: Callable[[str], None] = lambda line: None,
                 side_by_side: bool = False) -> list[ModeResult]:
    """The scenario once per loop mode in `loops` (False = off), results in
    that order: one mode after the other, or all at once with `side_by_side`
    (each its own processes, servers and database; they share the machine,
    so a busy machine slows both alike).
    `base_env`: the environment the workers start from (without HOMEO_*).
    A scenario that needs other clocks adjusts `tuning` first (Scenario.adjust)."""
    if scenario.adjust is not None:
        tuning = scenario.adjust(tuning)

    def play(loop_on: bool) -> ModeResult:
        return _run_once(scenario, loop_on, tuning, homeo_command=homeo_command,
                         base_env=base_env, progress=progress)

    if not side_by_side or len(loops) < 2:
        return [play(loop_on) for loop_on in loops]
    with ThreadPoolExecutor(max_workers=len(loops), thread_name_prefix="chaos") as pool:
        return list(pool.map(play, loops))


def _run_once(scenario: Scenario, loop_on: bool, tuning: Tuning, *,
              homeo_command: Sequence[str], base_env: Mapping[str, str],
              progress: Callable[[str], None]) -> ModeResult:
    mode = "on" if loop_on else "off"
    root = Path(tempfile.mkdtemp(prefix=f"homeo-chaos-{scenario.name}-{mode}-"))
    flaky, steady = FaultServer(), FaultServer()
    started: list[FaultServer] = []
    workers: list[subprocess.Popen[bytes]] = []
    backends: Backends | None = None
    disk = root / "disk"
    mounted = False
    group: RunCgroup | None = None
    try:
        disk.mkdir()
        if tuning.data_disk_bytes is not None:
            _mount(disk, tuning.data_disk_bytes)
            mounted = True
        for server in (flaky, steady):
            server.default = Reply(body=completion("ok"), delay=tuning.provider_delay_seconds)
            server.start()
            started.append(server)
        agents = root / "agents"
        agents.mkdir()
        (agents / "chaos.yaml").write_text(scenario.workload_yaml or AGENT_YAML)
        for name, text in scenario.agents.items():
            (agents / name).write_text(text)
        data = disk / "data"
        data.mkdir()
        url = f"sqlite:///{data / 'homeo.db'}"
        backends = open_backends(url)  # migrates before the workers open it
        if tuning.min_free_disk_bytes:  # the harness submits as the API would
            backends.store.disk_floor = DiskFloor(data, tuning.min_free_disk_bytes)
        if scenario.prepare is not None:
            scenario.prepare(backends)
        models = {"chaos": [
            {"model": "openai:chaos", "name": "flaky", "base_url": flaky.base_url,
             "api_key": "chaos"},
            {"model": "openai:chaos", "name": "steady", "base_url": steady.base_url,
             "api_key": "chaos"}]}
        env = {**base_env, **tuning.environment(loop_on), "HOMEO_DATA_DIR": str(data),
               "HOMEO_AGENTS_DIR": str(agents), "HOMEO_MODELS": json.dumps(models)}
        progress(f"{scenario.name}, loop {mode}: starting {tuning.workers} workers in {root}")
        if tuning.memory_headroom_bytes is not None:
            group = _memory_group()
        for index in range(tuning.workers):
            log = (root / f"worker-{index}.log").open("wb")
            supervised = ["--processes", "1"] if scenario.supervised else []
            workers.append(subprocess.Popen([*homeo_command, "worker", *supervised], env=env,
                                            stdout=log, stderr=subprocess.STDOUT))
            if group is not None:
                group.add(workers[-1].pid)  # before it imports much; its children follow
        _wait_ready(backends, workers, tuning, root)
        if group is not None and tuning.memory_headroom_bytes is not None:
            limit = _limit_memory(group, tuning.memory_headroom_bytes)
            progress(f"{scenario.name}, loop {mode}: the workers' memory limit is"
                     f" {limit / 2**20:.0f} MiB")
        system = System(flaky, steady, workers, backends, tuning, data)
        submitted, refused, fault_at, (faulty_before, steady_before) = _workload(
            system, scenario, progress)
        progress(f"{scenario.name}, loop {mode}: {len(submitted)} runs accepted,"
                 f" {len(refused)} refused; waiting for them to end")
        outcomes = _drain(backends, submitted, tuning.drain_seconds) + [
            RunOutcome(at, REFUSED, at) for at in refused]
        if scenario.drain_others:
            _drain_all(backends, system.others, tuning.drain_seconds)
        decisions = [(d.action, d.status) for d in backends.store.list_decisions(limit=1000)]
        others = [backends.store.get_run(tenant, run_id) for tenant, run_id in system.others]
        return summarize(mode, outcomes, fault_at, tuning.slo, decisions,
                         faulty_calls=len(flaky.received) - faulty_before,
                         steady_calls=len(steady.received) - steady_before,
                         others=[None if run is None else run.status for run in others],
                         oom_kills=0 if group is None else group.oom_kills())
    finally:
        _stop(workers)
        if group is not None:
            group.kill_all()  # what the supervisors started and left, if anything
            group.remove()
        for server in started:
            server.stop()
        if backends is not None:
            backends.close()
        if mounted:
            _unmount(disk)
        shutil.rmtree(root, ignore_errors=True)


def _memory_group() -> RunCgroup:
    try:
        # No limit to speak of until the workers are up (`_limit_memory`).
        return RunCgroup.create(Limits(memory_bytes=UNLIMITED_BYTES), controllers=("memory",))
    except OSError as error:
        raise ChaosError(f"this scenario runs the workers in a memory cgroup of their own, and"
                         f" making one failed (it needs root and cgroup v1's memory"
                         f" controller): {error}") from error


def _limit_memory(group: RunCgroup, headroom: int) -> int:
    """Limit the group to its working set now plus `headroom`; the limit."""
    memory = group.groups["memory"]
    usage = int((memory / "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in (memory / "memory.stat").read_text().splitlines())
    limit = usage - int(stat.get("total_inactive_file", 0)) + headroom
    (memory / "memory.limit_in_bytes").write_text(str(limit))
    swap = memory / "memory.memsw.limit_in_bytes"
    if swap.exists():  # lowered after memory's: memory + swap may not be below memory
        swap.write_text(str(limit))
    return limit


def _mount(where: Path, size: int) -> None:
    """A tmpfs of `size` bytes at `where` (root only)."""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700",
                           "homeo-chaos", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ChaosError(f"this scenario gives the data directory a small filesystem of its"
                         f" own, and mounting a tmpfs at {where} failed (it needs root):"
                         f" {done.stderr.strip() or done.returncode}")


def _unmount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
        # Still busy (a process of ours not gone yet): detach it now, freed when idle.
        subprocess.run(["umount", "--lazy", str(where)], capture_output=True)


def _wait_ready(backends: Backends, workers: list[subprocess.Popen[bytes]], tuning: Tuning,
                root: Path) -> None:
    deadline = time.monotonic() + tuning.startup_seconds
    while time.monotonic() < deadline:
        for index, worker in enumerate(workers):
            if worker.poll() is not None:
                tail = (root / f"worker-{index}.log").read_text(errors="replace")[-1500:]
                raise ChaosError(f"worker {index} exited with {worker.returncode}: {tail}")
        store = backends.store
        if (len(store.list_workers()) >= len(workers)
                and store.get_agent(TENANT, AGENT) is not None):
            return
        time.sleep(0.1)
    raise ChaosError(f"the workers did not start within {tuning.startup_seconds:g}s")


def _workload(system: System, scenario: Scenario, progress: Callable[[str], None]
              ) -> tuple[list[str], list[float], float, tuple[int, int]]:
    """Submit the runs at a fixed rate, injecting the fault after the warm-up:
    the accepted runs' ids, when submissions were refused (the disk is below
    the free-disk floor), when the fault began, and the calls `flaky` and
    `steady` had by then."""
    tuning = system.tuning
    began = time.monotonic()
    ends = began + tuning.warmup_seconds + tuning.fault_seconds
    fault_at: float | None = None
    before = (0, 0)
    submitted: list[str] = []
    refused: list[float] = []
    while len(submitted) + len(refused) < tuning.max_runs and time.monotonic() < ends:
        due = began + (len(submitted) + len(refused)) / tuning.rate
        if fault_at is None and time.monotonic() - began >= tuning.warmup_seconds:
            before = (len(system.flaky.received), len(system.steady.received))
            fault_at = time.time()
            scenario.inject(system)
            progress(f"{scenario.name}: fault injected ({scenario.fault})")
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, 0.05))
            continue
        try:
            run, _ = submit_run(system.backends, NewRun(
                tenant_id=TENANT, agent=system.agent,
                input=f"question {len(submitted) + len(refused)}"))
        except DiskFull:
            refused.append(time.time())
            continue
        submitted.append(run.id)
    if fault_at is None:  # the count ran out first: the fault still comes, at the end
        before = (len(system.flaky.received), len(system.steady.received))
        fault_at = time.time()
        scenario.inject(system)
    return submitted, refused, fault_at, before


def _drain(backends: Backends, run_ids: list[str], seconds: float) -> list[RunOutcome]:
    """Each run as it is once all ended, or when `seconds` ran out."""
    deadline = time.monotonic() + seconds
    while True:
        runs = [backends.store.get_run(TENANT, run_id) for run_id in run_ids]
        if all(run is not None and run.status in FINAL for run in runs) or (
                time.monotonic() >= deadline):
            return [RunOutcome(run.created_at, run.status, run.finished_at)
                    if run is not None else RunOutcome(0.0, "missing", None) for run in runs]
        time.sleep(0.25)


def _drain_all(backends: Backends, runs: list[tuple[str, str]], seconds: float) -> None:
    """Wait until each (tenant, run id) has ended, or `seconds` ran out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(
            (run := backends.store.get_run(tenant, run_id)) is not None and run.status in FINAL
            for tenant, run_id in runs):
        time.sleep(0.25)


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
