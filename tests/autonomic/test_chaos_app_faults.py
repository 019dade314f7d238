"""Application-level chaos scenarios (homeo.autonomic.chaos.app_faults), played
with the loop off and on side by side against real `homeo worker` processes, fault servers
on 127.0.0.1 and a SQLite database.

provider-slow breaks no call, so it is judged by its symptom, not by a
breaker: the share of calls after the fault that went to the slow deployment.
Shares are compared with each other, never times with a number.
"""

from __future__ import annotations

import os
import sys

import pytest

from homeo.autonomic.chaos.harness import Tuning, run_scenario
from homeo.autonomic.chaos.measure import ModeResult, Slo
from homeo.autonomic.chaos.scenarios import SCENARIOS

# With the other chaos scenarios, one after another on one xdist worker.
pytestmark = pytest.mark.xdist_group("chaos")

TUNING = Tuning(warmup_seconds=6.0, fault_seconds=14.0, rate=3.0, max_runs=60,
                drain_seconds=240.0, startup_seconds=240.0, slo=Slo(latency_seconds=15.0))


def _play(name: str) -> tuple[ModeResult, ModeResult]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    off, on = run_scenario(SCENARIOS[name], [False, True], TUNING,
                           homeo_command=[sys.executable, "-c",
                                          "from homeo.cli import main; main()"],
                           base_env=env, side_by_side=True)
    return off, on


@pytest.mark.slow
def test_a_slow_provider_loses_nothing_and_the_loop_routes_calls_away_from_it() -> None:
    off, on = _play("provider-slow")

    for result in (off, on):
        assert result.submitted >= 10, result
        assert result.lost == 0, result
        assert result.succeeded == result.submitted, result  # slow, never failing
    assert sum(off.actions.values()) == 0, off
    assert set(on.actions) & {"shift_weight", "open_breaker"}, on.actions
    assert set(on.actions) <= {"shift_weight", "open_breaker"}, on.actions
    # The symptom: without the loop the slow deployment keeps its share of the
    # calls (about half); with it, much less.
    assert off.faulty_share is not None and on.faulty_share is not None
    assert on.faulty_share < off.faulty_share, (off, on)


def test_provider_slow_makes_a_slow_answer_several_healthy_ones_yet_within_the_timeout(
        ) -> None:
    adjust = SCENARIOS["provider-slow"].adjust
    assert adjust is not None
    tuning = adjust(Tuning())
    slow = 0.8 * tuning.attempt_timeout_seconds
    assert slow < tuning.attempt_timeout_seconds
    assert slow >= 4 * tuning.provider_delay_seconds
    assert tuning.baseline_min_samples * tuning.baseline_every_seconds < tuning.warmup_seconds

