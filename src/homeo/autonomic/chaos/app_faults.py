"""Application-level faults for `homeo chaos run` (registered in scenarios.py).

provider-slow: the flaky deployment still answers, only slowly. No call
fails, so no breaker opens on its own; what the loop sees is the deployment's
P95 latency far above its own baseline (`provider_slow`), and what it should
do is route less to it. The scenario's tuning makes a healthy answer quick
(0.2 s) and an attempt's timeout 3 s, so that a slow one (0.8 of it, 2.4 s)
is twelve times slower yet never times out; keeps each router's call stats
short (8 s: they show the slowness within seconds, yet hold the 5 calls
Analyze needs) and lets baselines form within the warm-up.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from homeo.autonomic.chaos.faultserver import Reply

if TYPE_CHECKING:
    from homeo.autonomic.chaos.harness import System, Tuning

HEALTHY_DELAY_SECONDS = 0.2
SLOW_SHARE_OF_TIMEOUT = 0.8
# Long enough that a slow answer (0.8 of it) stands out from a healthy one even
# when a busy machine slows every call.
SLOW_ATTEMPT_TIMEOUT_SECONDS = 3.0


def slow_down(system: System) -> None:
    system.flaky.default = Reply(status=200, body=system.flaky.default.body,
                                 delay=SLOW_SHARE_OF_TIMEOUT
                                 * system.tuning.attempt_timeout_seconds)


def slow_tuning(tuning: Tuning) -> Tuning:
    return dataclasses.replace(
        tuning, provider_delay_seconds=HEALTHY_DELAY_SECONDS,
        attempt_timeout_seconds=max(tuning.attempt_timeout_seconds, SLOW_ATTEMPT_TIMEOUT_SECONDS),
        warmup_seconds=max(tuning.warmup_seconds, 6.0),
        stats_window_seconds=8.0, baseline_every_seconds=0.5, baseline_min_samples=6)
