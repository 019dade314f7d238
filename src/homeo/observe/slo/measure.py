"""Each SLO's current value, error budget left and burn rates, at `now`.

Runs and steps are counted in the store, so the numbers hold for every
process sharing the database; API latencies are this process's own
(`Metrics.requests`), since it started.

- value: good events / all events over the SLO's window (None: no events);
- budget left: 1 - (bad share / allowed bad share); 1 when nothing was
  spent, 0 when the budget is gone, below 0 when overspent;
- burn rate over 5m, 1h, 6h: bad share in that window / allowed bad share;
  1 spends the budget exactly over the window, 14.4 spends 2% of a 30-day
  budget in an hour (None: no events in the window).

Shares are computed as exact fractions, so 1 bad run in 100 against 0.99 is
a burn rate of exactly 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from homeo.observe.slo.definitions import Slo
from homeo.observe.windows import LatencyWindows
from homeo.store.base import Store
from homeo.store.models import WindowCounts

BURN_WINDOWS: tuple[tuple[str, int], ...] = (("5m", 300), ("1h", 3600), ("6h", 6 * 3600))


@dataclass(frozen=True)
class SloStatus:
    slo: Slo
    scope: str  # what was counted: "tenant acme", "all tenants", "this process"
    total: int = 0
    good: int = 0
    value: float | None = None
    budget_left: float | None = 1.0
    burn_rates: dict[str, float | None] = field(default_factory=dict)
    # api_latency: how long this process has counted requests (may be under the window).
    covers_seconds: float | None = None
    # Why there is no value here (an api_latency SLO outside the serving process).
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.slo.name,
            "description": self.slo.description,
            "kind": self.slo.kind,
            "objective": self.slo.objective,
            "window": self.slo.window,
            "threshold_seconds": self.slo.threshold_seconds,
            "scope": self.scope,
            "events": self.total,
            "good_events": self.good,
            "value": self.value,
            "error_budget_left": self.budget_left,
            "burn_rates": self.burn_rates,
            "covers_seconds": self.covers_seconds,
            "note": self.note,
        }


def measure(
    slos: list[Slo],
    store: Store,
    *,
    now: float,
    requests: LatencyWindows | None = None,
    tenant_id: str | None = None,
) -> list[SloStatus]:
    """The status of each SLO. With `tenant_id`, runs and steps are that
    tenant's only, and SLOs scoped to another tenant are left out. Without
    `requests` (a process that serves no API), api_latency SLOs have a note
    instead of a value."""
    statuses = []
    for slo in slos:
        if tenant_id is not None and slo.tenant not in (None, tenant_id):
            continue
        statuses.append(_measure(slo, store, now, requests, tenant_id or slo.tenant))
    return statuses


def _measure(
    slo: Slo, store: Store, now: float, requests: LatencyWindows | None, tenant: str | None
) -> SloStatus:
    starts = [now - slo.seconds, *(now - seconds for _, seconds in BURN_WINDOWS)]
    scope = f"tenant {tenant}" if tenant else "all tenants"
    covers = None
    if slo.kind == "run_success":
        counts = store.run_outcomes(starts, until=now, tenant_id=tenant, agent=slo.agent)
    elif slo.kind == "step_latency":
        assert slo.threshold_seconds is not None  # checked when the file was read
        counts = store.step_speeds(starts, until=now, within_seconds=slo.threshold_seconds,
                                   tenant_id=tenant, kind=slo.step_kind)
    else:
        if requests is None:
            return SloStatus(slo, "this process", budget_left=None,
                             burn_rates={name: None for name, _ in BURN_WINDOWS},
                             note="API latency is counted by the serving process:"
                                  " see GET /v1/slo or the Prometheus rules")
        assert slo.threshold_seconds is not None
        counts = []
        for start in starts:
            total, good = requests.counts(start, slo.threshold_seconds)
            counts.append(WindowCounts(since=start, total=total, good=good))
        scope, covers = "this process, all tenants", requests.covers_seconds(now)
    window, *burns = counts
    allowed = 1 - Fraction(str(slo.objective))
    value = Fraction(window.good, window.total) if window.total else None
    return SloStatus(
        slo,
        scope,
        total=window.total,
        good=window.good,
        value=None if value is None else float(value),
        budget_left=1.0 if value is None else float(1 - (1 - value) / allowed),
        burn_rates={name: _burn(counted, allowed)
                    for (name, _), counted in zip(BURN_WINDOWS, burns, strict=True)},
        covers_seconds=covers,
    )


def _burn(counts: WindowCounts, allowed: Fraction) -> float | None:
    if not counts.total:
        return None
    return float(Fraction(counts.total - counts.good, counts.total) / allowed)
