"""SLO values, budgets and burn rates from real runs and steps in a real store
(SQLite and PostgreSQL) and from request latencies, at an injected `now`.
Every number is checked exactly: the shares are exact fractions."""

from __future__ import annotations

from fractions import Fraction

from homeo.backends import Backends
from homeo.observe.metrics import Metrics
from homeo.observe.slo.definitions import parse_slos
from homeo.observe.slo.measure import measure
from homeo.store.models import NewRun

NOW = 999_960.0  # a whole minute: request windows count whole minutes
HOUR = 3600.0

SLOS = parse_slos("""
slos:
  - {name: echo-runs, kind: run_success, objective: 0.9, window: 1d, agent: echo}
  - {name: calc-runs, kind: run_success, objective: 0.8, window: 1d, agent: calc}
  - {name: globex-runs, kind: run_success, objective: 0.5, window: 1d, tenant: globex}
  - {name: model-steps, kind: step_latency, objective: 0.75, window: 1h, threshold_seconds: 5,
     step_kind: model}
  - {name: api, kind: api_latency, objective: 0.5, window: 1h, threshold_seconds: 0.5}
""", "test")


def ended(backends: Backends, tenant: str, agent: str, status: str, ago: float) -> None:
    run, _ = backends.store.create_run(
        NewRun(tenant_id=tenant, agent=agent, input="x"), now=NOW - ago - 1)
    backends.store.transition_run(tenant, run.id, status, allowed_from={"queued"}, now=NOW - ago)


def add_runs(backends: Backends) -> None:
    ended(backends, "acme", "echo", "failed", 2 * 86400)  # before the window
    for _ in range(6):
        ended(backends, "acme", "echo", "succeeded", 10 * HOUR)
    ended(backends, "acme", "echo", "failed", 10 * HOUR)
    ended(backends, "acme", "echo", "succeeded", 3 * HOUR)
    ended(backends, "acme", "echo", "failed", 3 * HOUR)
    ended(backends, "acme", "echo", "failed", 1800)
    ended(backends, "acme", "echo", "succeeded", 120)
    ended(backends, "acme", "echo", "cancelled", 60)  # cancelled runs do not count
    ended(backends, "globex", "echo", "failed", 120)
    for _ in range(9):
        ended(backends, "acme", "calc", "succeeded", 10 * HOUR)
    ended(backends, "acme", "calc", "failed", 3 * HOUR)
    backends.store.create_run(NewRun(tenant_id="acme", agent="echo", input="x"), now=NOW - 10)


def add_steps(backends: Backends) -> None:
    run, _ = backends.store.create_run(NewRun(tenant_id="acme", agent="echo", input="x"),
                                       now=NOW - 3 * HOUR)
    # (finished how long ago, took how long, kind)
    steps = [(2 * HOUR, 30.0, "model"), (2400, 1.0, "model"), (2400, 10.0, "model"),
             (2400, 5.0, "model"), (2400, 20.0, "tool"), (180, 6.0, "model")]
    for seq, (ago, took, kind) in enumerate(steps):
        backends.store.begin_step("acme", run.id, seq, kind, kind, None, now=NOW - ago - took)
        backends.store.complete_step("acme", run.id, seq, "ok", {}, now=NOW - ago)


def by_name(statuses: list) -> dict:
    return {status.slo.name: status for status in statuses}


def test_run_success_over_every_tenant(backends: Backends) -> None:
    add_runs(backends)
    echo = by_name(measure(SLOS, backends.store, now=NOW))["echo-runs"]
    # In the day: acme 11 (8 succeeded), globex 1 failed.
    assert (echo.scope, echo.total, echo.good) == ("all tenants", 12, 8)
    assert echo.value == float(Fraction(2, 3))
    assert echo.budget_left == float(1 - Fraction(1, 3) / Fraction(1, 10))  # overspent: -7/3
    assert echo.burn_rates == {"5m": 5.0, "1h": float(Fraction(20, 3)), "6h": 6.0}


def test_run_success_of_one_agent_within_budget(backends: Backends) -> None:
    add_runs(backends)
    calc = by_name(measure(SLOS, backends.store, now=NOW))["calc-runs"]
    assert (calc.total, calc.good, calc.value) == (10, 9, 0.9)
    assert calc.budget_left == 0.5  # 10% bad of the 20% allowed
    assert calc.burn_rates == {"5m": None, "1h": None, "6h": 5.0}


def test_a_tenant_sees_its_own_runs_and_no_other_tenants_slo(backends: Backends) -> None:
    add_runs(backends)
    acme = by_name(measure(SLOS, backends.store, now=NOW, tenant_id="acme"))
    assert "globex-runs" not in acme
    echo = acme["echo-runs"]
    assert (echo.scope, echo.total, echo.good) == ("tenant acme", 11, 8)
    assert echo.value == float(Fraction(8, 11))
    assert echo.budget_left == float(1 - Fraction(3, 11) * 10)
    assert echo.burn_rates == {"5m": 0.0, "1h": 5.0, "6h": 5.0}
    globex = by_name(measure(SLOS, backends.store, now=NOW))["globex-runs"]
    assert (globex.scope, globex.total, globex.good, globex.value) == ("tenant globex", 1, 0, 0.0)
    assert globex.budget_left == -1.0 and globex.burn_rates["5m"] == 2.0


def test_step_latency_counts_steps_of_the_kind_within_the_threshold(backends: Backends) -> None:
    add_steps(backends)
    steps = by_name(measure(SLOS, backends.store, now=NOW))["model-steps"]
    # In the hour: model steps of 1s, 10s, 5s (at the threshold: good) and 6s.
    assert (steps.total, steps.good, steps.value) == (4, 2, 0.5)
    assert steps.budget_left == -1.0
    assert steps.burn_rates == {"5m": 4.0, "1h": 2.0, "6h": 2.4}
    assert by_name(measure(SLOS, backends.store, now=NOW, tenant_id="globex"))[
        "model-steps"].total == 0


def test_no_events_leave_the_budget_whole(backends: Backends) -> None:
    status = by_name(measure(SLOS, backends.store, now=NOW))["echo-runs"]
    assert (status.total, status.value, status.budget_left) == (0, None, 1.0)
    assert status.burn_rates == {"5m": None, "1h": None, "6h": None}


def test_api_latency_from_this_process_requests(backends: Backends) -> None:
    clock = [NOW - 3 * HOUR]
    metrics = Metrics(clock=lambda: clock[0])
    for ago, took in [(2 * HOUR, 0.05), (1800, 0.2), (1800, 1.0), (120, 2.5), (120, 0.01)]:
        clock[0] = NOW - ago
        metrics.observe_request("/v1/runs", "GET", 200, took)
    api = by_name(measure(SLOS, backends.store, now=NOW, requests=metrics.requests))["api"]
    assert (api.scope, api.total, api.good, api.value) == ("this process, all tenants", 4, 2, 0.5)
    assert api.budget_left == 0.0
    assert api.burn_rates == {"5m": 1.0, "1h": 1.0, "6h": 0.8}
    assert api.covers_seconds == 3 * HOUR
    without = by_name(measure(SLOS, backends.store, now=NOW))["api"]
    assert without.value is None and "counted by the serving process" in without.note
