"""Prometheus rules from the SLO definitions: recording rules for each SLO's
error ratio over the windows its alerts and dashboard read, and
multi-window, multi-burn-rate alerts (the Google SRE workbook, "Alerting on
SLOs"): page when the last hour and the last 5 minutes both burn the budget
14.4 times too fast, or the last 6 hours and 30 minutes 6 times; open a ticket
at 3 times over a day (and 2 hours) or once over 3 days (and 6 hours). One
alert per SLO and severity, its windows joined by `or`.

Those windows are the workbook's for a 30-day SLO; a shorter SLO window
scales them down (at least 5 minutes long, 1 minute short), so each alert
still means the same share of the budget spent.

Prometheus sums the series of every homeo process it scrapes. The tenant
label is there only when /metrics is scraped with HOMEO_METRICS_TOKEN, so
an SLO scoped to a tenant needs that.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from homeo.observe.slo.definitions import Slo, format_window, window_seconds

RATIO = "homeo:slo_errors:ratio_rate"  # + window, e.g. homeo:slo_errors:ratio_rate5m
DISPLAY_WINDOWS = ("5m", "1h", "6h")
MONTH = 30 * 86400
MIN_LONG, MIN_SHORT = 300, 60


@dataclass(frozen=True)
class Tier:
    severity: str
    factor: Decimal  # burn rate
    long: int  # seconds, for a 30-day SLO
    short: int


TIERS = (
    Tier("page", Decimal("14.4"), 3600, 300),
    Tier("page", Decimal("6"), 6 * 3600, 1800),
    Tier("ticket", Decimal("3"), 86400, 2 * 3600),
    Tier("ticket", Decimal("1"), 3 * 86400, 6 * 3600),
)


def allowed_errors(slo: Slo) -> Decimal:
    """1 - objective, exactly as written (0.99 gives 0.01, not 0.010000000000000009)."""
    return 1 - Decimal(str(slo.objective))


def _limit(tier: Tier, budget: Decimal) -> str:
    return format((tier.factor * budget).normalize(), "f")


def error_ratio(slo: Slo, window: str) -> str:
    """PromQL for the share of the SLO's events over `window` that were bad,
    on the metrics homeo exports."""
    if slo.kind == "run_success":
        scope = "".join(f',{label}="{value}"' for label, value in
                        (("tenant", slo.tenant), ("agent", slo.agent)) if value)
        bad = f'sum(rate(homeo_runs_finished_total{{status="failed"{scope}}}[{window}]))'
        total = (f'sum(rate(homeo_runs_finished_total{{status=~"succeeded|failed"{scope}}}'
                 f"[{window}]))")
        # No failure yet means no failed series: count that as zero, not as no data.
        return f"({bad} or vector(0)) / {total}"
    metric = "homeo_step_seconds" if slo.kind == "step_latency" else "homeo_http_request_seconds"
    scope = f',kind="{slo.step_kind}"' if slo.step_kind else ""
    assert slo.threshold_seconds is not None
    bound = floatToGoString(slo.threshold_seconds)
    fast = f'sum(rate({metric}_bucket{{le="{bound}"{scope}}}[{window}]))'
    total = f"sum(rate({metric}_count{{{scope.lstrip(',')}}}[{window}]))".replace("{}", "")
    return f"1 - {fast} / {total}"


def alert_windows(slo: Slo) -> list[tuple[Tier, str, str]]:
    """Each tier with its long and short window for this SLO; a tier that
    lands on the same windows as a stricter one of its severity is left out."""
    chosen: dict[tuple[str, str, str], tuple[Tier, str, str]] = {}
    for tier in TIERS:
        long = format_window(max(MIN_LONG, round(tier.long * slo.seconds / MONTH / 60) * 60))
        short = format_window(max(MIN_SHORT, round(tier.short * slo.seconds / MONTH / 60) * 60))
        key = (tier.severity, long, short)
        if key not in chosen or tier.factor < chosen[key][0].factor:
            chosen[key] = (tier, long, short)
    return list(chosen.values())


def windows_of(slo: Slo) -> list[str]:
    """Every window a rule or the dashboard reads the error ratio over."""
    needed = {*DISPLAY_WINDOWS, slo.window}
    for _, long, short in alert_windows(slo):
        needed |= {long, short}
    return sorted(needed, key=window_seconds)


def rule_groups(slos: list[Slo]) -> dict[str, Any]:
    groups = []
    for slo in slos:
        labels = {"slo": slo.name}
        budget = allowed_errors(slo)
        rules: list[dict[str, Any]] = [
            {"record": f"{RATIO}{window}", "expr": error_ratio(slo, window), "labels": labels}
            for window in windows_of(slo)
        ]
        rules.append({"record": "homeo:slo_objective", "expr": f"vector({slo.objective})",
                      "labels": labels})
        rules.append({
            "record": "homeo:slo_error_budget:remaining",
            "expr": f'1 - {RATIO}{slo.window}{{slo="{slo.name}"}} / {budget}',
            "labels": labels,
        })
        for severity in ("page", "ticket"):
            tiers = [(tier, long, short) for tier, long, short in alert_windows(slo)
                     if tier.severity == severity]
            rules.append({
                "alert": "HomeoSloErrorBudgetBurn",
                "expr": " or ".join(
                    f'({RATIO}{long}{{slo="{slo.name}"}} > {_limit(tier, budget)}'
                    f' and {RATIO}{short}{{slo="{slo.name}"}} > {_limit(tier, budget)})'
                    for tier, long, short in tiers),
                "labels": {**labels, "severity": severity},
                "annotations": {
                    "summary": f"SLO {slo.name} is spending its error budget too fast",
                    "description": (
                        f"{slo.name} ({slo.objective} over {slo.window}, so {budget} of events"
                        " may be bad): the error ratio is above "
                        + "; or above ".join(
                            f"{_limit(tier, budget)} ({tier.factor}x, the budget gone in"
                            f" {_exhausted_in(slo, tier.factor)}) over both {long} and {short}"
                            for tier, long, short in tiers) + "."
                    ),
                },
            })
        groups.append({"name": f"homeo-slo-{slo.name}", "rules": rules})
    return {"groups": groups}


def _exhausted_in(slo: Slo, factor: Decimal) -> str:
    hours = Decimal(slo.seconds) / 3600 / factor
    return f"{hours:.1f} hours" if hours < 72 else f"{hours / 24:.1f} days"


def render_rules(slos: list[Slo]) -> str:
    header = ("# Generated by `homeo slo rules` from the SLO definitions; edit those, not this.\n"
              "# Check with: promtool check rules FILE\n")
    return header + yaml.dump(rule_groups(slos), Dumper=_NoAliases, sort_keys=False, width=1000)


class _NoAliases(yaml.SafeDumper):
    """Writes shared values (every rule's labels) out in full, not as &anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
