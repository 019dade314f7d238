"""Analyze: find what is abnormal in an observation, and say what is wrong.

Each signal keeps a baseline: its recent values (one sample every
`baseline_every_seconds`, the last `baseline_samples` of them). A value is
anomalous when its robust z-score, (value - median) / (1.4826 * MAD), is at
least `z` in either direction. The MAD is floored (at 5% of the median, and
at a per-signal noise level) so that a signal that was flat does not turn
every small wobble into an anomaly. Baselines keep learning while a value is
abnormal, so a lasting change becomes the new normal after about half a window.
The median and MAD are recomputed only when a sample is added, so checking a
value costs a few arithmetic operations.

Diagnoses, each with the evidence (signals, their values, the rule or the
baseline and z-score that fired) and a confidence in [0, 1]:

    provider_down      its breaker is open, or nearly every recent call failed
    provider_degraded  a share of its calls fail (or its breaker is half-open)
    provider_slow      its P95 latency is far above its own baseline
                       (the first two while a failure is recent, at most
                       `provider_recent_seconds` old, or no call succeeded
                       since; but while the loop holds its breaker open,
                       nobody calls it: then only a recent failure, or for
                       slowness a recent call, counts, so holding it open is
                       judged to have helped)
    worker_dead        its heartbeat is older than `worker_stale_seconds`
    worker_bloated     its resident memory grew by `worker_growth_bytes` since
                       it started while memory is tight (under
                       `memory_tight_ratio` left): a leak, or a cache that never
                       lets go, that a fresh process would not have
    backlog_growing    due jobs pile up: above their baseline or old, and rising
    poison_job         its lease expired again and again: it took down or hung
                       the worker holding it each time (and more often than any
                       other job: one held beside it as often may be the poison).
                       A death not yet counted (the worker holding it now is
                       stale) counts, so the job is quarantined before it is
                       claimed again and takes another worker down
    sandbox_hanging    sandboxed tools keep running into their time limit while
                       jobs wait and nearly every live worker slot is busy
    sandbox_oom        sandboxed tools keep being killed for memory: their limit
                       (HOMEO_SANDBOX_MEMORY) is too small for what the agents
                       run; no action is planned (a limit is the operator's call)
    agent_regressed    its runs fail far more often than they used to
    disk_pressure      the data directory's disk is nearly full
    memory_pressure    the machine has little memory left
    tenant_flooding    one tenant's jobs are most of a deep queue shared with others
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from homeo.autonomic.monitor import Observation

# The smallest spread a signal's baseline is given, in the signal's unit.
NOISE: dict[str, float] = {
    "provider.error_rate": 0.02,
    "provider.latency_p50_seconds": 0.01,
    "provider.latency_p95_seconds": 0.01,
    "agent.failure_rate": 0.02,
    "queue.due": 1.0,
    "queue.due_by_tenant": 1.0,
    "queue.oldest_due_age_seconds": 1.0,
}
# Diagnoses whose subject belongs to a tenant (see monitor.TENANT_SIGNALS).
TENANT_DIAGNOSES = frozenset({"poison_job", "agent_regressed", "tenant_flooding"})
# Counters that only grow, and per-job facts: no baseline.
UNBASELINED = frozenset({"queue.dead", "queue.lease_expiries", "job.lease_expiries",
                         "job.attempts", "job.holder_heartbeat_age_seconds", "workers.known",
                         "worker.heartbeat_age_seconds",
                         "worker.sandbox_timeouts", "worker.sandbox_ooms", "sandbox.new_runs",
                         "sandbox.new_timeouts", "sandbox.new_ooms", "worker.rss_bytes",
                         "worker.rss_growth_bytes", "provider.held_open",
                         "provider.last_call_age_seconds", "provider.last_failure_age_seconds",
                         "provider.last_success_age_seconds"})


@dataclass(frozen=True)
class Thresholds:
    z: float = 3.5
    baseline_samples: int = 120
    baseline_min_samples: int = 12
    baseline_every_seconds: float = 5.0
    provider_min_calls: int = 5
    provider_degraded_error_rate: float = 0.2
    provider_down_error_rate: float = 0.9
    provider_slow_factor: float = 2.0  # P95 at least this many times its baseline
    # A provider's failures count while its newest failure is at most this old,
    # or no call succeeded since it. But while the loop holds its breaker open
    # (nobody may call it) only a recent failure counts, and slowness only a
    # recent call: so holding it open is judged to have helped. Longer than a
    # breaker's cool-down, so its probes keep a failing deployment's diagnosis.
    provider_recent_seconds: float = 45.0
    worker_stale_seconds: float = 30.0
    backlog_min_due: int = 10
    backlog_age_seconds: float = 60.0
    backlog_trend_seconds: float = 30.0
    poison_expiries: int = 2
    sandbox_window_seconds: float = 60.0
    sandbox_min_timeouts: int = 2  # within the window
    sandbox_busy_share: float = 0.75  # of live workers' slots in use
    sandbox_min_ooms: int = 2  # within the window
    agent_min_runs: int = 5
    agent_failure_rate: float = 0.3  # and above its baseline; 0.5 before it has one
    disk_free_ratio: float = 0.05
    disk_free_bytes: float = 512 * 2**20
    memory_available_ratio: float = 0.05
    memory_tight_ratio: float = 0.25
    worker_growth_bytes: float = 512 * 2**20
    flood_min_due: int = 20
    flood_share: float = 0.6


class Baseline:
    """A signal's recent values and how far a new one is from them."""

    def __init__(self, *, samples: int, min_samples: int, every_seconds: float,
                 noise: float) -> None:
        self.values: deque[float] = deque(maxlen=samples)
        self.min_samples = min_samples
        self.every_seconds = every_seconds
        self.noise = noise
        self.last_at = -math.inf
        self.median: float | None = None
        self.scale = 0.0

    def z(self, value: float) -> float | None:
        """The robust z-score of `value`; None until enough samples are in."""
        if self.median is None:
            return None
        return (value - self.median) / self.scale

    def offer(self, value: float, at: float) -> None:
        """Take `value` as a sample, if the last one is `every_seconds` old."""
        if at - self.last_at < self.every_seconds:
            return
        self.last_at = at
        self.values.append(value)
        if len(self.values) < self.min_samples:
            return
        ordered = sorted(self.values)
        median = statistics.median(ordered)
        mad = statistics.median(abs(v - median) for v in ordered)
        self.median = median
        self.scale = max(1.4826 * mad, 0.05 * abs(median), self.noise, 1e-12)


@dataclass(frozen=True)
class Anomaly:
    signal: str
    value: float
    baseline: float
    z: float


@dataclass
class Diagnosis:
    kind: str
    subject: str
    confidence: float
    summary: str
    evidence: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Analysis:
    at: float
    anomalies: list[Anomaly]
    diagnoses: list[Diagnosis]


class Analyzer:
    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self.baselines: dict[str, Baseline] = {}
        self._due: deque[tuple[float, float]] = deque()
        self._timeouts: deque[tuple[float, float]] = deque()  # (at, sandbox.new_timeouts)
        self._ooms: deque[tuple[float, float, float]] = deque()  # (at, new_ooms, new_runs)

    def analyze(self, seen: Observation) -> Analysis:
        """Score every signal against its baseline (then let it learn the value)
        and diagnose."""
        anomalies: dict[str, Anomaly] = {}
        z_of: dict[str, float] = {}
        for signal in seen.signals:
            if signal.name in UNBASELINED:
                continue
            baseline = self._baseline(signal.key, signal.name)
            z = baseline.z(signal.value)
            if z is not None:
                z_of[signal.key] = z
                if abs(z) >= self.thresholds.z:
                    anomalies[signal.key] = Anomaly(signal.key, signal.value,
                                                    baseline.median or 0.0, z)
            baseline.offer(signal.value, seen.at)
        self._remember_due(seen)
        diagnoses = [
            *self._providers(seen, anomalies),
            # Before worker_dead: its job is quarantined before the dead
            # worker's leases end and another worker could claim it.
            *self._poison(seen),
            *self._workers(seen),
            *self._bloated(seen),
            *self._backlog(seen, anomalies),
            *self._sandbox(seen),
            *self._sandbox_ooms(seen),
            *self._agents(seen, anomalies),
            *self._machine(seen),
            *self._floods(seen, anomalies),
        ]
        return Analysis(seen.at, sorted(anomalies.values(), key=lambda a: a.signal), diagnoses)

    def _baseline(self, key: str, name: str) -> Baseline:
        baseline = self.baselines.get(key)
        if baseline is None:
            t = self.thresholds
            baseline = self.baselines[key] = Baseline(
                samples=t.baseline_samples, min_samples=t.baseline_min_samples,
                every_seconds=t.baseline_every_seconds, noise=NOISE.get(name, 1e-9))
        return baseline

    # --- providers ----------------------------------------------------------
    def _providers(self, seen: Observation, anomalies: dict[str, Anomaly]) -> list[Diagnosis]:
        t = self.thresholds
        found = []
        calls_of = seen.of("provider.calls")
        rates = seen.of("provider.error_rate")
        p95s = seen.of("provider.latency_p95_seconds")
        held_of = seen.of("provider.held_open")
        call_ages = seen.of("provider.last_call_age_seconds")
        failure_ages = seen.of("provider.last_failure_age_seconds")
        success_ages = seen.of("provider.last_success_age_seconds")
        for deployment, breaker in seen.of("provider.breaker").items():
            calls = calls_of.get(deployment, 0.0)
            held = held_of.get(deployment, 0.0) >= 1
            still = self._still_failing(deployment, held, failure_ages.get(deployment),
                                        success_ages.get(deployment))
            if still is not None:
                # Behind a hold its breaker's own state only ages: no call
                # reaches it to open or close it.
                failing = self._failing(deployment, 0.0 if held else breaker, calls,
                                        rates.get(deployment), anomalies, still)
                found.extend(failing)
                if any(diagnosis.kind == "provider_down" for diagnosis in failing):
                    continue
            call_age = call_ages.get(deployment)
            if held and (call_age is None or call_age > t.provider_recent_seconds):
                continue  # the loop stopped its calls, and none was slow since
            found.extend(self._slow(deployment, calls, p95s.get(deployment), anomalies))
        return found

    def _still_failing(self, deployment: str, held: bool, failure_age: float | None,
                       success_age: float | None) -> dict[str, Any] | None:
        """Evidence that a deployment's failures are not over: one was recent,
        or, unless the loop holds its breaker open (then nobody calls it), no
        call succeeded since. None: they are over, or there were none."""
        t = self.thresholds
        if failure_age is None:
            return None
        if failure_age <= t.provider_recent_seconds:
            return _rule("provider.last_failure_age_seconds", deployment,
                         round(failure_age, 3), f"<= {t.provider_recent_seconds:g}")
        if held:
            return None
        if success_age is None or success_age > failure_age:
            return _rule("provider.last_success_age_seconds", deployment,
                         None if success_age is None else round(success_age, 3),
                         "no call succeeded since its newest failure")
        return None

    def _failing(self, deployment: str, breaker: float, calls: float, rate: float | None,
                 anomalies: dict[str, Anomaly], recent: dict[str, Any]) -> list[Diagnosis]:
        """A deployment that failed a call recently: down or degraded, if it is."""
        t = self.thresholds
        counted = calls >= t.provider_min_calls and rate is not None
        calls_evidence = _rule("provider.calls", deployment, calls, f">= {t.provider_min_calls}")
        if breaker >= 2:
            return [Diagnosis(
                "provider_down", deployment, 0.95,
                f"deployment {deployment}: its circuit breaker is open",
                [_rule("provider.breaker", deployment, breaker, "2 (open)"), recent])]
        if counted and rate >= t.provider_down_error_rate:  # type: ignore[operator]
            return [Diagnosis(
                "provider_down", deployment, 0.9,
                f"deployment {deployment}: {rate:.0%} of its last {calls:.0f} calls failed",
                [_rule("provider.error_rate", deployment, rate,
                       f">= {t.provider_down_error_rate}"), calls_evidence, recent])]
        if counted and rate >= t.provider_degraded_error_rate:  # type: ignore[operator]
            evidence = [_rule("provider.error_rate", deployment, rate,
                              f">= {t.provider_degraded_error_rate}"), calls_evidence]
            anomaly = anomalies.get(f"provider.error_rate[{deployment}]")
            if anomaly is not None:
                evidence.append(_anomaly(anomaly, t.z))
            return [Diagnosis(
                "provider_degraded", deployment,
                _scale(rate / t.provider_degraded_error_rate, boost=anomaly is not None),
                f"deployment {deployment}: {rate:.0%} of its last {calls:.0f} calls failed",
                [*evidence, recent])]
        if breaker >= 1:
            return [Diagnosis(
                "provider_degraded", deployment, 0.6,
                f"deployment {deployment}: its breaker is half-open, probing after failures",
                [_rule("provider.breaker", deployment, breaker, "1 (half-open)"), recent])]
        return []

    def _slow(self, deployment: str, calls: float, p95: float | None,
              anomalies: dict[str, Anomaly]) -> list[Diagnosis]:
        """A deployment whose P95 is far above its baseline."""
        t = self.thresholds
        slow = anomalies.get(f"provider.latency_p95_seconds[{deployment}]")
        if (slow is None or slow.z <= 0 or calls < t.provider_min_calls or p95 is None
                or p95 < t.provider_slow_factor * slow.baseline):
            return []
        return [Diagnosis(
            "provider_slow", deployment,
            _scale(p95 / (t.provider_slow_factor * max(slow.baseline, 1e-9)), boost=True),
            f"deployment {deployment}: P95 latency {p95:.3g}s, usually {slow.baseline:.3g}s",
            [_anomaly(slow, t.z),
             _rule("provider.latency_p95_seconds", deployment, p95,
                   f">= {t.provider_slow_factor} x baseline {slow.baseline:.3g}"),
             _rule("provider.calls", deployment, calls, f">= {t.provider_min_calls}")])]

    # --- workers and the queue ---------------------------------------------
    def _workers(self, seen: Observation) -> list[Diagnosis]:
        t = self.thresholds
        leases = seen.of("worker.leases")
        found = []
        for worker, age in seen.of("worker.heartbeat_age_seconds").items():
            if age < t.worker_stale_seconds:
                continue
            held = leases.get(worker, 0.0)
            evidence = [_rule("worker.heartbeat_age_seconds", worker, age,
                              f">= {t.worker_stale_seconds}"),
                        _rule("worker.leases", worker, held, "> 0 raises confidence")]
            confidence = 0.7 if age < 2 * t.worker_stale_seconds else 0.85
            if held:
                confidence += 0.1
            found.append(Diagnosis(
                "worker_dead", worker, round(confidence, 3),
                f"worker {worker}: no heartbeat for {age:.0f}s"
                + (f"; it still holds {held:.0f} leases" if held else ""),
                evidence))
        return found

    def _bloated(self, seen: Observation) -> list[Diagnosis]:
        t = self.thresholds
        available = seen.value("memory.available_ratio")
        if available is None or available >= t.memory_tight_ratio:
            return []
        found = []
        ages, resident = seen.of("worker.heartbeat_age_seconds"), seen.of("worker.rss_bytes")
        for worker, growth in seen.of("worker.rss_growth_bytes").items():
            if growth < t.worker_growth_bytes or ages.get(worker, 0.0) >= t.worker_stale_seconds:
                continue
            rss = resident.get(worker, 0.0)
            found.append(Diagnosis(
                "worker_bloated", worker, _scale(growth / t.worker_growth_bytes, boost=False),
                f"worker {worker}: {rss / 2**20:.0f} MiB resident, {growth / 2**20:.0f} MiB"
                f" more than when it started, with {available:.1%} of memory left",
                [_rule("worker.rss_growth_bytes", worker, growth,
                       f">= {t.worker_growth_bytes:.0f}"),
                 _rule("memory.available_ratio", "", available, f"< {t.memory_tight_ratio}"),
                 _rule("worker.rss_bytes", worker, rss, "")]))
        return found

    def _remember_due(self, seen: Observation) -> None:
        due = seen.value("queue.due")
        if due is None:
            return
        self._due.append((seen.at, due))
        horizon = seen.at - 2 * self.thresholds.backlog_trend_seconds
        while len(self._due) > 1 and self._due[1][0] <= horizon:
            self._due.popleft()

    def _backlog(self, seen: Observation, anomalies: dict[str, Anomaly]) -> list[Diagnosis]:
        t = self.thresholds
        due = seen.value("queue.due") or 0.0
        age = seen.value("queue.oldest_due_age_seconds") or 0.0
        if due < t.backlog_min_due:
            return []
        # The due count `backlog_trend_seconds` ago (or the oldest kept).
        past = next((value for at, value in reversed(self._due)
                     if at <= seen.at - t.backlog_trend_seconds), None)
        if past is None or due <= past:
            return []
        high = anomalies.get("queue.due")
        old = age >= t.backlog_age_seconds
        if not (old or (high is not None and high.z > 0)):
            return []
        evidence = [_rule("queue.due", "", due, f">= {t.backlog_min_due}"),
                    {"signal": "queue.due", "value": due,
                     "rule": f"> {past:g}, its value {t.backlog_trend_seconds:g}s before"},
                    _rule("queue.oldest_due_age_seconds", "", age, f">= {t.backlog_age_seconds}")]
        if high is not None:
            evidence.append(_anomaly(high, t.z))
        confidence = 0.6 + 0.15 * old + 0.15 * (high is not None)
        return [Diagnosis("backlog_growing", "", round(confidence, 3),
                          f"{due:.0f} jobs due (from {past:.0f}), the oldest waiting {age:.0f}s",
                          evidence)]

    def _poison(self, seen: Observation) -> list[Diagnosis]:
        t = self.thresholds
        workers = max(seen.value("workers.known") or 0.0, 1.0)
        holders = seen.of("job.holder_heartbeat_age_seconds")
        # A holder gone stale died with it (or hung): one more expiry to come.
        dying = {job for job, age in holders.items() if age >= t.worker_stale_seconds}
        counted = {job: n + (job in dying) for job, n in seen.of("job.lease_expiries").items()}
        repeated = {job: n for job, n in counted.items() if n >= t.poison_expiries}
        found = []
        for job, expiries in repeated.items():
            if sum(1 for n in repeated.values() if n >= expiries) > 1:
                # Another job went down with its workers as often: they were held
                # together each time (a bystander beside the poison one), so
                # which one kills is not known yet; the next death tells.
                continue
            every = expiries >= workers
            evidence = [_rule("job.lease_expiries", job, expiries - (job in dying),
                              f">= {t.poison_expiries}" if job not in dying
                              else f">= {t.poison_expiries - 1}, and its holder is stale")]
            if job in dying:
                evidence.append(_rule("job.holder_heartbeat_age_seconds", job, holders[job],
                                      f">= {t.worker_stale_seconds:g}"))
            evidence.append(_rule("workers.known", "", workers,
                                  f"<= {expiries:g}: it took down every worker" if every
                                  else f"> {expiries:g}: some workers not yet tried"))
            found.append(Diagnosis(
                "poison_job", job, 0.9 if every else round(min(0.5 + 0.1 * expiries, 0.8), 3),
                f"job {job.split('/', 1)[-1]}: its worker died or hung {expiries:.0f} times"
                " while holding it",
                evidence))
        return found

    def _sandbox_ooms(self, seen: Observation) -> list[Diagnosis]:
        t = self.thresholds
        ooms, runs = seen.value("sandbox.new_ooms"), seen.value("sandbox.new_runs")
        if ooms or runs:
            self._ooms.append((seen.at, ooms or 0.0, runs or 0.0))
        while self._ooms and self._ooms[0][0] <= seen.at - t.sandbox_window_seconds:
            self._ooms.popleft()
        killed = sum(count for _, count, _ in self._ooms)
        if killed < t.sandbox_min_ooms:
            return []
        ran = sum(count for _, _, count in self._ooms)
        return [Diagnosis(
            "sandbox_oom", "", round(min(0.5 + 0.1 * killed / t.sandbox_min_ooms, 0.9), 3),
            f"{killed:.0f} of {ran:.0f} sandboxed tool runs in the last"
            f" {t.sandbox_window_seconds:g}s were killed for memory: HOMEO_SANDBOX_MEMORY may be"
            " too small for what the agents run (no action: a limit is the operator's call)",
            [{"signal": "sandbox.new_ooms", "value": killed,
              "rule": f">= {t.sandbox_min_ooms} in the last {t.sandbox_window_seconds:g}s"},
             {"signal": "sandbox.new_runs", "value": ran, "rule": "of these runs"}])]

    def _sandbox(self, seen: Observation) -> list[Diagnosis]:
        """Hung sandboxed tools hold worker slots until their time limit ends
        them, using no CPU meanwhile: while they do and jobs wait, more slots
        would let those jobs run."""
        t = self.thresholds
        new = seen.value("sandbox.new_timeouts")
        if new:
            self._timeouts.append((seen.at, new))
        while self._timeouts and self._timeouts[0][0] <= seen.at - t.sandbox_window_seconds:
            self._timeouts.popleft()
        timeouts = sum(count for _, count in self._timeouts)
        due = seen.value("queue.due") or 0.0
        if timeouts < t.sandbox_min_timeouts or due <= 0:
            return []
        ages = seen.of("worker.heartbeat_age_seconds")
        live = {worker for worker, age in ages.items() if age < t.worker_stale_seconds}
        slots = sum(v for worker, v in seen.of("worker.slots").items() if worker in live)
        in_use = sum(v for worker, v in seen.of("worker.in_use").items() if worker in live)
        if not slots or in_use < t.sandbox_busy_share * slots:
            return []
        evidence = [
            {"signal": "sandbox.new_timeouts", "value": timeouts,
             "rule": f">= {t.sandbox_min_timeouts} in the last {t.sandbox_window_seconds:g}s"},
            _rule("queue.due", "", due, "> 0"),
            {"signal": "worker.in_use", "value": in_use,
             "rule": f">= {t.sandbox_busy_share} x {slots:g} slots of live workers"}]
        confidence = 0.6 + 0.1 * min(timeouts / t.sandbox_min_timeouts - 1, 2) + 0.1 * (
            in_use >= slots)
        return [Diagnosis(
            "sandbox_hanging", "", round(min(confidence, 0.95), 3),
            f"{timeouts:.0f} sandboxed tool runs hit their time limit in the last"
            f" {t.sandbox_window_seconds:g}s; {in_use:.0f} of {slots:.0f} slots are busy and"
            f" {due:.0f} jobs wait", evidence)]

    # --- agents, machine, tenants -------------------------------------------
    def _agents(self, seen: Observation, anomalies: dict[str, Anomaly]) -> list[Diagnosis]:
        t = self.thresholds
        runs = seen.of("agent.runs")
        found = []
        for agent, rate in seen.of("agent.failure_rate").items():
            count = runs.get(agent, 0.0)
            if count < t.agent_min_runs or rate < t.agent_failure_rate:
                continue
            key = f"agent.failure_rate[{agent}]"
            anomaly = anomalies.get(key)
            has_baseline = self.baselines[key].median is not None
            if anomaly is None or anomaly.z <= 0:
                if has_baseline or rate < 0.5:
                    continue  # as bad as it usually is, or no baseline and not bad enough
            evidence = [_rule("agent.failure_rate", agent, rate, f">= {t.agent_failure_rate}"),
                        _rule("agent.runs", agent, count, f">= {t.agent_min_runs}")]
            if anomaly is not None:
                evidence.append(_anomaly(anomaly, t.z))
            found.append(Diagnosis(
                "agent_regressed", agent,
                _scale(rate / t.agent_failure_rate, boost=anomaly is not None),
                f"agent {agent}: {rate:.0%} of its last {count:.0f} runs failed"
                + (f", usually {anomaly.baseline:.0%}" if anomaly is not None else ""),
                evidence))
        return found

    def _machine(self, seen: Observation) -> list[Diagnosis]:
        t = self.thresholds
        found = []
        ratio, free = seen.value("disk.free_ratio"), seen.value("disk.free_bytes")
        if (ratio is not None and ratio < t.disk_free_ratio) or (
                free is not None and free < t.disk_free_bytes):
            evidence = [_rule("disk.free_ratio", "", ratio, f"< {t.disk_free_ratio}"),
                        _rule("disk.free_bytes", "", free, f"< {t.disk_free_bytes:.0f}")]
            both = (ratio is not None and ratio < t.disk_free_ratio) and (
                free is not None and free < t.disk_free_bytes)
            found.append(Diagnosis(
                "disk_pressure", "", 0.95 if both else 0.75,
                f"the data directory's disk has {free or 0:.0f} bytes free"
                f" ({(ratio or 0):.1%})", evidence))
        available = seen.value("memory.available_ratio")
        if available is not None and available < t.memory_available_ratio:
            found.append(Diagnosis(
                "memory_pressure", "", 0.9,
                f"the machine has {available:.1%} of its memory available",
                [_rule("memory.available_ratio", "", available,
                       f"< {t.memory_available_ratio}")]))
        return found

    def _floods(self, seen: Observation, anomalies: dict[str, Anomaly]) -> list[Diagnosis]:
        t = self.thresholds
        by_tenant = seen.of("queue.due_by_tenant")
        total = sum(by_tenant.values())
        if len(by_tenant) < 2 or total <= 0:
            return []
        found = []
        for tenant, due in by_tenant.items():
            share = due / total
            if due < t.flood_min_due or share < t.flood_share:
                continue
            anomaly = anomalies.get(f"queue.due_by_tenant[{tenant}]")
            evidence = [_rule("queue.due_by_tenant", tenant, due, f">= {t.flood_min_due}"),
                        {"signal": "queue.due_by_tenant", "subject": tenant,
                         "value": round(share, 4),
                         "rule": f"share of all due jobs >= {t.flood_share}"}]
            if anomaly is not None:
                evidence.append(_anomaly(anomaly, t.z))
            found.append(Diagnosis(
                "tenant_flooding", tenant, _scale(share / t.flood_share,
                                                  boost=anomaly is not None and anomaly.z > 0),
                f"tenant {tenant}: {due:.0f} of the {total:.0f} due jobs ({share:.0%})",
                evidence))
        return found


def _rule(name: str, subject: str, value: float | None, rule: str) -> dict[str, Any]:
    return {"signal": name, "subject": subject, "value": value, "rule": rule}


def _anomaly(anomaly: Anomaly, z: float) -> dict[str, Any]:
    return {"signal": anomaly.signal, "value": anomaly.value,
            "baseline": anomaly.baseline, "z": round(anomaly.z, 2), "rule": f"|z| >= {z}"}


def _scale(ratio: float, *, boost: bool) -> float:
    """Confidence from how far past its threshold a value is (`ratio` >= 1):
    0.5 at the threshold, towards 0.9 far past it; 0.05 more with an anomaly."""
    confidence = 0.5 + 0.4 * (1 - math.exp(-(max(ratio, 1.0) - 1.0)))
    return round(min(confidence + (0.05 if boost else 0.0), 0.99), 3)
