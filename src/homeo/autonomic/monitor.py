"""Monitor: every interval, measure homeo across every process that shares the
database, plus what only this process knows.

From the store and queue (so every process's work counts): queue depth and
the age of the oldest due job, leases (held, lapsed, expired so far), dead
letters, jobs whose lease expired again and again (and the heartbeat age of
the worker holding one again), runs waiting, queued and
running, runs per agent and their failure rate over `failure_window_seconds`,
each worker's heartbeat age, slots, slots in use and leases held, sandboxed
tool runs that timed out or were killed for memory (each worker counts its
own and writes them with its heartbeat), and the SLO burn rates. From this
process: each model deployment's breaker, error rate and latency (its
router's calls), how long ago its newest call, failure and success were,
whether the loop holds its breaker open,
its RSS, the free disk of the data directory, and the memory it may still
use: the machine's available share, or the room under its cgroup's memory
limit when that is tighter (observe/memory_room.py).

Every measurement is a `Signal`: a name, a subject (what it is of; "" for
the whole system) and a number. Subjects that belong to a tenant start with
the tenant and a slash (`acme/support`, `acme/job_...`), or are the tenant.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from homeo.llm.callstats import CallWindow
from homeo.observe import memory_room
from homeo.observe.slo.definitions import Slo
from homeo.observe.slo.measure import measure
from homeo.queue.base import Queue
from homeo.store.base import Store
from homeo.store.models import WorkerRecord

# Signals whose subject belongs to a tenant (see the module docstring).
TENANT_SIGNALS = frozenset({
    "queue.due_by_tenant", "agent.runs", "agent.failure_rate", "job.lease_expiries",
    "job.attempts", "job.holder_heartbeat_age_seconds",
})
BREAKER_CODES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
# (deployment, its breaker's own state, its call window, the state the loop holds it at)
ProviderStats = Callable[[], Iterable[tuple[str, str, CallWindow, str | None]]]


@dataclass(frozen=True)
class Signal:
    name: str
    value: float
    subject: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}[{self.subject}]" if self.subject else self.name


@dataclass
class Observation:
    at: float
    signals: list[Signal] = field(default_factory=list)

    def add(self, name: str, value: float | None, subject: str = "") -> None:
        if value is not None:
            self.signals.append(Signal(name, float(value), subject))

    def value(self, name: str, subject: str = "") -> float | None:
        for signal in self.signals:
            if signal.name == name and signal.subject == subject:
                return signal.value
        return None

    def of(self, name: str) -> dict[str, float]:
        """Subject -> value of every signal called `name`."""
        return {signal.subject: signal.value for signal in self.signals if signal.name == name}


class Monitor:
    def __init__(
        self,
        store: Store,
        queue: Queue,
        *,
        slos: Sequence[Slo] = (),
        providers: ProviderStats | None = None,
        data_dir: Path | None = None,
        failure_window_seconds: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`providers` gives this process's deployments (ModelCatalog.provider_stats)."""
        self.store = store
        self.queue = queue
        self.slos = list(slos)
        self.providers = providers
        self.data_dir = data_dir
        self.failure_window_seconds = failure_window_seconds
        self.clock = clock
        self._totals: dict[str, float] = {}
        self._worker_totals: dict[tuple[str, str], float] = {}
        self._observed = False  # whether _workers ran before

    def observe(self, now: float | None = None) -> Observation:
        now = self.clock() if now is None else now
        seen = Observation(now)
        workers = self.store.list_workers()  # read once: the queue's signals use it too
        self._queue(seen, now, workers)
        self._runs(seen, now)
        self._workers(seen, now, workers)
        self._providers(seen)
        self._machine(seen)
        self._slos(seen, now)
        return seen

    def _queue(self, seen: Observation, now: float, workers: list[WorkerRecord]) -> None:
        backlog = self.queue.backlog(now)
        seen.add("queue.due", backlog.due)
        seen.add("queue.oldest_due_age_seconds",
                 0.0 if backlog.oldest_due_at is None else max(now - backlog.oldest_due_at, 0.0))
        seen.add("queue.leased", backlog.leased)
        seen.add("queue.lapsed_leases", backlog.lapsed)
        seen.add("queue.dead", backlog.dead)
        seen.add("queue.lease_expiries", backlog.lease_expiries)
        # What changed since the last observation (0 on the first).
        seen.add("queue.new_dead", self._since_last("dead", backlog.dead))
        seen.add("queue.new_lease_expiries",
                 self._since_last("lease_expiries", backlog.lease_expiries))
        for tenant, due in sorted(backlog.due_by_tenant.items()):
            seen.add("queue.due_by_tenant", due, tenant)
        for worker, leases in sorted(backlog.leases_by_worker.items()):
            seen.add("worker.leases", leases, worker)
        beats = {worker.id: worker.last_seen for worker in workers}
        for job in backlog.repeat_expiries:
            subject = f"{job.tenant_id}/{job.id}"
            seen.add("job.lease_expiries", job.lease_expiries, subject)
            seen.add("job.attempts", job.attempts, subject)
            # Whether the worker holding it now is alive: if it died too, that
            # death is one more expiry, counted only once the job is claimed again.
            holder = (job.lease_owner or "").split("#", 1)[0]
            if job.status == "leased" and holder in beats:
                seen.add("job.holder_heartbeat_age_seconds", max(now - beats[holder], 0.0),
                         subject)

    def _since_last(self, name: str, total: float) -> float:
        before = self._totals.get(name, total)
        self._totals[name] = total
        return max(total - before, 0.0)

    def _runs(self, seen: Observation, now: float) -> None:
        counts = self.store.count_runs()
        for status in ("queued", "running", "waiting"):
            seen.add(f"runs.{status}", counts.get(status, 0))
        outcomes = self.store.agent_outcomes(since=now - self.failure_window_seconds, until=now)
        for agent in outcomes:
            subject = f"{agent.tenant_id}/{agent.agent}"
            seen.add("agent.runs", agent.total, subject)
            seen.add("agent.failure_rate", agent.failed / agent.total, subject)

    def _workers(self, seen: Observation, now: float, workers: list[WorkerRecord]) -> None:
        seen.add("workers.known", len(workers))
        new = {"runs": 0.0, "timeouts": 0.0, "ooms": 0.0}
        for worker in workers:
            seen.add("worker.heartbeat_age_seconds", max(now - worker.last_seen, 0.0), worker.id)
            seen.add("worker.slots", worker.slots, worker.id)
            seen.add("worker.in_use", worker.in_use, worker.id)
            seen.add("worker.sandbox_timeouts", worker.sandbox_timeouts, worker.id)
            seen.add("worker.sandbox_ooms", worker.sandbox_ooms, worker.id)
            if worker.rss_bytes and worker.rss_start_bytes:
                seen.add("worker.rss_bytes", worker.rss_bytes, worker.id)
                seen.add("worker.rss_growth_bytes", worker.rss_bytes - worker.rss_start_bytes,
                         worker.id)
            for name, total in (("runs", worker.sandbox_runs),
                                ("timeouts", worker.sandbox_timeouts),
                                ("ooms", worker.sandbox_ooms)):
                new[name] += self._worker_since_last(worker.id, name, total)
        present = {worker.id for worker in workers}
        self._worker_totals = {key: value for key, value in self._worker_totals.items()
                               if key[0] in present}
        self._observed = True
        # Sandboxed tool runs that ended since the last observation, in every
        # process: all of them, those the wall-clock limit ended, and those
        # killed for memory.
        seen.add("sandbox.new_runs", new["runs"])
        seen.add("sandbox.new_timeouts", new["timeouts"])
        seen.add("sandbox.new_ooms", new["ooms"])

    def _worker_since_last(self, worker: str, name: str, total: float) -> float:
        """What a worker's counter gained since the last observation: all of it
        for a worker that appeared since, nothing on the first observation."""
        before = self._worker_totals.get((worker, name), total if not self._observed else 0.0)
        self._worker_totals[(worker, name)] = total
        return max(total - before, 0.0)

    def _providers(self, seen: Observation) -> None:
        if self.providers is None:
            return
        for deployment, state, window, held in self.providers():
            seen.add("provider.breaker", BREAKER_CODES.get(state, 0.0), deployment)
            seen.add("provider.held_open", float(held == "open"), deployment)
            seen.add("provider.calls", window.calls, deployment)
            seen.add("provider.error_rate", window.error_rate, deployment)
            seen.add("provider.latency_p50_seconds", window.p50_seconds, deployment)
            seen.add("provider.latency_p95_seconds", window.p95_seconds, deployment)
            seen.add("provider.last_call_age_seconds", window.last_call_age_seconds, deployment)
            seen.add("provider.last_failure_age_seconds", window.last_failure_age_seconds,
                     deployment)
            seen.add("provider.last_success_age_seconds", window.last_success_age_seconds,
                     deployment)

    def _machine(self, seen: Observation) -> None:
        seen.add("process.rss_bytes", memory_room.process_rss_bytes())
        room = memory_room.cgroup_room()
        seen.add("memory.available_ratio", memory_room.ratio_with(room))
        if room is not None:
            seen.add("memory.cgroup_limit_bytes", room[0])
            seen.add("memory.cgroup_working_set_bytes", room[1])
        if self.data_dir is not None and self.data_dir.exists():
            usage = shutil.disk_usage(self.data_dir)
            seen.add("disk.free_bytes", usage.free)
            seen.add("disk.free_ratio", usage.free / usage.total if usage.total else None)

    def _slos(self, seen: Observation, now: float) -> None:
        if not self.slos:
            return
        for status in measure(self.slos, self.store, now=now):
            for window in ("5m", "1h"):
                seen.add(f"slo.burn_{window}", status.burn_rates.get(window), status.slo.name)
