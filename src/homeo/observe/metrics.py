"""Prometheus metrics. Counts that live in the database (runs by status, queue
depth, lease expiries) are read at scrape time, so they are right even when
other processes do the work; step latency is observed where steps run.

Usage is counted per tenant, but tenant names and their spending are shown
only to a scraper that proved it may see them (`render(tenants=True)`, which
/metrics does only behind HOMEO_METRICS_TOKEN); everyone else sees the sums
over tenants."""

from __future__ import annotations

import time
from typing import Any
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.registry import Collector

from homeo.observe.windows import LatencyWindows
from homeo.queue.base import JOB_STATUSES, Queue
from homeo.store.base import Store
from homeo.store.models import RUN_STATUSES

STEP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# API latency SLO thresholds must be one of these (observe/slo/definitions.py).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _DatabaseCollector(Collector):
    def __init__(self, store: Store, queue: Queue) -> None:
        self.store = store
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("homeo_runs", "Runs by status.", labels=["status"])
        counts = self.store.count_runs()
        for status in RUN_STATUSES:
            runs.add_metric([status], counts.get(status, 0))
        yield runs
        stats = self.queue.stats()
        jobs = GaugeMetricFamily("homeo_queue_jobs", "Queue jobs by status.", labels=["status"])
        for status in JOB_STATUSES:
            jobs.add_metric([status], stats.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "homeo_queue_depth", "Jobs waiting to be claimed.", value=stats.get("queued", 0)
        )
        yield CounterMetricFamily(
            "homeo_queue_lease_expiries",
            "Leases that expired because a worker died or stopped heartbeating.",
            value=stats.get("lease_expiries", 0),
        )


TENANT_LABEL = "tenant"


class _WithoutTenants(Collector):
    """The registry's metrics with the tenant label summed away (and the
    per-series `_created` timestamps, which have no sum, left out)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            if not any(TENANT_LABEL in sample.labels for sample in family.samples):
                yield family
                continue
            sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = tuple(sorted((k, v) for k, v in sample.labels.items()
                                      if k != TENANT_LABEL))
                sums[(sample.name, labels)] = sums.get((sample.name, labels), 0.0) + sample.value
            summed = Metric(family.name, f"{family.documentation} Summed over tenants.",
                            family.type, family.unit)
            summed.samples = [Sample(name, dict(labels), value) for (name, labels), value
                              in sums.items()]
            yield summed


# The states of homeo.llm.breaker, spelled out to keep observe/ free of llm/ imports.
BREAKER_STATES = ("closed", "half_open", "open")


class _BreakerCollector(Collector):
    def __init__(self, states: Callable[[], Iterable[tuple[str, str]]]) -> None:
        self.states = states

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "homeo_llm_breaker_state",
            "1 for the state each deployment's circuit breaker is in, 0 for the others.",
            labels=["deployment", "state"],
        )
        for deployment, current in self.states():
            for state in BREAKER_STATES:
                gauge.add_metric([deployment, state], 1.0 if state == current else 0.0)
        yield gauge


class Metrics:
    """One registry per process (or per test), so nothing leaks between apps."""

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 request_retention_seconds: int = 30 * 86400) -> None:
        """`clock` (epoch seconds) dates the requests that API latency SLOs
        count; they are kept for `request_retention_seconds` (the longest window)."""
        self.registry = CollectorRegistry()
        self.clock = clock
        self.step_seconds = Histogram(
            "homeo_step_seconds",
            "Time to run one step, by kind.",
            ["kind"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.llm_tokens = Counter(
            "homeo_llm_tokens",
            "Model tokens used by runs, by tenant, model and direction (input, output).",
            ["tenant", "model", "direction"],
            registry=self.registry,
        )
        self.llm_cost = Counter(
            "homeo_llm_cost_usd",
            "Cost of the model calls of runs in USD (from HOMEO_PRICES), by tenant and model.",
            ["tenant", "model"],
            registry=self.registry,
        )

        self.runs_finished = Counter(
            "homeo_runs_finished",
            "Runs this process ended, by tenant, agent and final status.",
            ["tenant", "agent", "status"],
            registry=self.registry,
        )
        self.safety_verdicts = Counter(
            "homeo_safety_verdicts",
            "Texts a safety guard flagged, by tenant, boundary (input, tool_output,"
            " retrieved, output), guard and the action taken.",
            ["tenant", "boundary", "guard", "action"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "homeo_http_request_seconds",
            "Time from a request's arrival to its response headers, by route template,"
            " method and status class (2xx, 4xx, ...).",
            ["route", "method", "code"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        # The same latencies by minute, for the API latency SLOs that GET /v1/slo
        # shows (a histogram only holds totals since the process started).
        self.requests = LatencyWindows(
            HTTP_BUCKETS, retention_seconds=request_retention_seconds, started=clock())

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_seconds.labels(route, method, f"{status // 100}xx").observe(seconds)
        self.requests.observe(seconds, now=self.clock())

    def count_usage(
        self, tenant: str, model: str, *, input_tokens: int, output_tokens: int, cost_usd: float
    ) -> None:
        self.llm_tokens.labels(tenant, model, "input").inc(input_tokens)
        self.llm_tokens.labels(tenant, model, "output").inc(output_tokens)
        self.llm_cost.labels(tenant, model).inc(cost_usd)

    def count_screening(self, tenant: str, screening: dict[str, Any]) -> None:
        """Count each flagged verdict of a screening (`Screening.to_json()`)."""
        for verdict in screening["verdicts"]:
            self.safety_verdicts.labels(tenant, screening["boundary"], verdict["guard"],
                                        verdict["action"]).inc()

    def watch(self, store: Store, queue: Queue) -> None:
        self.registry.register(_DatabaseCollector(store, queue))

    def watch_breakers(self, states: Callable[[], Iterable[tuple[str, str]]]) -> None:
        """`states()` gives (deployment, breaker state) pairs at scrape time."""
        self.registry.register(_BreakerCollector(states))

    def render(self, *, tenants: bool = True) -> bytes:
        """The text exposition; `tenants=False` sums tenant-labelled series
        over tenants, so no tenant's name or spending shows."""
        return generate_latest(self.registry if tenants else _WithoutTenants(self.registry))
