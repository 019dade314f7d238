"""The faults `homeo chaos run` injects, one per scenario.

Every scenario runs against the same system: one alias, `chaos`, with two
deployments on fault servers (`flaky`, the one a provider fault hits, and
`steady`, healthy), and worker processes that run a one-call agent on it. A
scenario's `inject` turns the fault on, after the warm-up, and it stays on
until the workload ends: what is measured is whether homeo heals around it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from homeo.autonomic.chaos import (
    app_faults,
    disk_faults,
    job_faults,
    load_faults,
    memory_faults,
    sandbox_faults,
)
from homeo.autonomic.chaos.faultserver import Reply, error

if TYPE_CHECKING:
    from homeo.autonomic.chaos.harness import System, Tuning
    from homeo.backends import Backends


BUSY_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str  # what is injected, in words
    heals_by: str  # what the loop is expected to do about it, in words
    inject: Callable[[System], None]
    # The tuning this scenario needs, from the one asked for (None: as asked).
    adjust: Callable[[Tuning], Tuning] | None = None
    # More agents its fault runs: file name -> YAML.
    agents: Mapping[str, str] = field(default_factory=dict)
    # Each worker under `homeo worker --processes 1`, which restarts it when it dies.
    supervised: bool = False
    # Wait for the fault's own runs to end too (not for a flood the loop may pause).
    drain_others: bool = False
    # The steady workload's agent, if not the harness's one-call agent (YAML
    # named `chaos`), and what to put in the store before the workers start.
    workload_yaml: str | None = None
    prepare: Callable[[Backends], None] | None = None


def _answer_500(system: System) -> None:
    system.flaky.default = error(500, "the chaos harness injected a server error")


def _hang(system: System) -> None:
    # Longer than an attempt may take: every call to it times out.
    system.flaky.default = Reply(status=200, body=system.flaky.default.body,
                                 delay=4 * system.tuning.attempt_timeout_seconds)


def _kill_a_worker(system: System) -> None:
    # The one holding the most leases now (runs in flight are the point),
    # waiting a little for one to hold any; else the first still alive.
    mine = {worker.pid: worker for worker in system.workers if worker.poll() is None}
    victim = next(iter(mine.values()))
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    while time.monotonic() < deadline:
        leases = system.backends.queue.backlog(time.time()).leases_by_worker
        held = sorted(((leases.get(row.id, 0), row.pid)
                       for row in system.backends.store.list_workers() if row.pid in mine),
                      reverse=True)
        if held and held[0][0] > 0:
            victim = mine[held[0][1]]
            break
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)  # only a process this harness started
    victim.wait()


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("provider-500", "the flaky deployment answers every call with HTTP 500",
             "hold its breaker open in every worker (or shift its weight away)", _answer_500),
    Scenario("provider-timeout", "the flaky deployment never answers within an attempt's timeout",
             "hold its breaker open in every worker (or shift its weight away)", _hang),
    Scenario("worker-kill", "one of the two worker processes is SIGKILLed with runs in flight",
             "end the dead worker's leases once its heartbeat is stale, so the other worker"
             " takes its runs before the leases would lapse", _kill_a_worker),
    Scenario("provider-slow", "the flaky deployment answers, but several times slower than"
             " before (within an attempt's timeout)", "shift its routing weight away (or hold"
             " its breaker open)", app_faults.slow_down, app_faults.slow_tuning),
    Scenario("tenant-flood", f"another tenant submits {load_faults.FLOOD_RUNS} runs at once",
             "shed that tenant at the API or pause its claims, so the steady tenant's runs"
             " keep their latency", load_faults.flood),
    Scenario("poison-job", "one run's tool kills the worker process that runs it, every"
             " time it runs", "end the dead worker's leases, and quarantine the job that"
             " took its workers down to dead letter", job_faults.poison,
             job_faults.poison_tuning,
             agents={"chaos-poison.yaml": job_faults.POISON_YAML}, supervised=True,
             drain_others=True),
    Scenario("sandbox-hang", f"a run every {sandbox_faults.HANG_EVERY_SECONDS:g} s whose"
             " sandboxed command never ends, until the sandbox's time limit"
             f" ({sandbox_faults.HANG_TIMEOUT_SECONDS:g} s) kills it",
             "give the workers more slots while hung sandboxes hold theirs and jobs wait",
             sandbox_faults.hang, sandbox_faults.hang_tuning,
             agents={"chaos-hang.yaml": sandbox_faults.HANG_YAML}, drain_others=True),
    Scenario("disk-full", "a file that is not homeo's leaves the data directory's disk"
             f" {disk_faults.DISK_LEFT_BYTES // 2**20} MiB free, under the loop's threshold,"
             " while every run writes its steps there",
             "prune the per-step checkpoints of runs finished over a day ago"
             " (HOMEO_CHECKPOINT_RETENTION_UNDER_PRESSURE) and give the room back to the"
             " filesystem, so the free-disk floor never refuses a run",
             disk_faults.fill, disk_faults.disk_tuning,
             workload_yaml=disk_faults.WORKLOAD_YAML, prepare=disk_faults.seed_history),
    Scenario("memory-leak", "from the fault on, every run's tool keeps"
             f" {memory_faults.LEAK_BYTES // 2**20} MiB it never frees, in workers whose memory"
             " cgroup's limit that fills before the fault ends",
             "recycle a worker that grew by"
             f" {memory_faults.GROWTH_BYTES // 2**20} MiB while memory is tight (SIGTERM: its"
             " runs go back to the queue; its supervisor starts a fresh one), one at a time,"
             " before the kernel kills one", memory_faults.leak, memory_faults.leak_tuning,
             agents={"chaos-leaky.yaml": memory_faults.LEAKY_YAML}, supervised=True),
)}
