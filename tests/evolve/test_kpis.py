"""Per-version KPIs from runs injected into a real store, with exact figures."""

from __future__ import annotations

import math

import pytest

from homeo.backends import Backends
from homeo.evolve.kpis import version_kpis
from homeo.evolve.stats import SCORE, mean, percentile, wilson
from homeo.store.models import EvalResult, NewRun


def test_wilson_interval_matches_the_formula() -> None:
    # 8 of 10: the textbook figures (Wilson 1927; e.g. Newcombe 1998, table I).
    estimate = wilson(8, 10)
    assert estimate.value == 0.8
    assert (round(estimate.low, 4), round(estimate.high, 4)) == (0.4902, 0.9433)
    assert (wilson(0, 5).low, round(wilson(0, 5).high, 4)) == (0.0, 0.4345)
    assert wilson(0, 0).value is None


def test_mean_uses_students_t_and_percentiles_interpolate() -> None:
    estimate = mean([1.0, 2.0, 3.0, 4.0])
    half = 3.182 * math.sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3 / 4)
    assert estimate.value == 2.5
    assert estimate.low == pytest.approx(2.5 - half) and estimate.high == pytest.approx(2.5 + half)
    assert mean([7.0]).model_dump() == {"value": 7.0, "low": 7.0, "high": 7.0, "n": 1}
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    assert percentile([], 0.5) is None


def _ended(backends: Backends, version: str | None, *, started: float, finished: float,
           status: str, tokens: tuple[int, int] = (0, 0), cost: float = 0.0,
           tool_errors: int = 0) -> str:
    store = backends.store
    run, _ = store.create_run(NewRun(tenant_id="acme", agent="calc", input="x",
                                     agent_version=version), now=started)
    claimed = store.claim_run("acme", run.id, now=started)
    store.begin_step("acme", run.id, 0, "model", "m", {}, now=started)
    store.complete_step("acme", run.id, 0, "out", {"seq": 0, "next": "end",
                                                   "state": {"tool_errors": tool_errors}},
                        input_tokens=tokens[0], output_tokens=tokens[1], cost_usd=cost,
                        fence=claimed.lease_epoch, now=finished)
    store.transition_run("acme", run.id, status, allowed_from={"running"},
                         output="done" if status == "succeeded" else None,
                         error="boom" if status == "failed" else None, now=finished)
    return run.id


def test_each_version_gets_its_own_figures(backends: Backends) -> None:
    store = backends.store
    v1 = store.put_agent("acme", "calc", {"model": "local", "max_steps": 3}, now=1.0).version
    v2 = store.put_agent("acme", "calc", {"model": "local", "max_steps": 4},
                         author="key:k1", now=2.0).version
    # v1: 3 succeeded, 1 failed; latencies 1, 2, 3, 10 s; tokens 10, 20, 30, 40.
    for index, (took, status) in enumerate([(1.0, "succeeded"), (2.0, "succeeded"),
                                            (3.0, "succeeded"), (10.0, "failed")]):
        _ended(backends, v1, started=100.0 + index, finished=100.0 + index + took, status=status,
               tokens=(5 * (index + 1), 5 * (index + 1)), cost=0.01 * (index + 1),
               tool_errors=1 if status == "failed" else 0)
    # v2: one run that succeeded in 0.5 s; a cancelled run does not count.
    _ended(backends, v2, started=200.0, finished=200.5, status="succeeded", tokens=(3, 4))
    cancelled, _ = store.create_run(NewRun(tenant_id="acme", agent="calc", input="x",
                                           agent_version=v2))
    store.transition_run("acme", cancelled.id, "cancelled", allowed_from={"queued"})
    store.put_eval_results([
        EvalResult(tenant_id="acme", eval_id="e1", suite="s", agent="calc", agent_version=v1,
                   case_id=case, run_id="r", status="succeeded", score=score,
                   passed=score == 1.0, at=5.0)
        for case, score in (("a", 1.0), ("b", 0.5), ("c", 0.0))])

    first, second = version_kpis(store, "acme", "calc")
    assert (first.version, first.parent, first.author, first.current) == (v1, None, "folder", False)
    assert (second.version, second.parent, second.author, second.current) == (
        v2, v1, "key:k1", True)
    assert (first.runs, first.succeeded, first.success_rate.value) == (4, 3, 0.75)
    assert first.success_rate.model_dump() == wilson(3, 4).model_dump()
    assert first.latency_p50 == pytest.approx(2.5)
    assert first.latency_p95 == pytest.approx(3.0 + 0.85 * 7.0)
    assert first.tokens_per_run.model_dump() == mean([10.0, 20.0, 30.0, 40.0]).model_dump()
    assert first.cost_per_run.value == pytest.approx(0.025)
    assert (first.tool_errors, first.tool_errors_per_run.value) == (1, 0.25)
    assert (first.eval_cases, first.eval_score.value) == (3, 0.5)
    # The t interval of 3 scores reaches past [0, 1]: cut to the scores' range.
    assert first.eval_score.model_dump() == mean([1.0, 0.5, 0.0], SCORE).model_dump()
    assert (first.eval_score.low, first.eval_score.high) == (0.0, 1.0)
    assert mean([1.0, 0.5, 0.0]).low < 0
    assert (second.runs, second.succeeded, second.latency_p50, second.latency_p95) == (
        1, 1, 0.5, 0.5)
    assert (second.tokens_per_run.value, second.eval_cases, second.eval_score.value) == (
        7.0, 0, None)
    assert version_kpis(store, "globex", "calc") == []
