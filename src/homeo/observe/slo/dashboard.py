"""A Grafana dashboard from the SLO definitions: a row per SLO with its value
over its window, the error budget left, and burn rates over 5m, 1h and 6h.

Its queries read homeo's own metrics (not the recording rules), so it works
on a Prometheus without the rules loaded; `${datasource}` picks the
Prometheus data source when the dashboard is imported."""

from __future__ import annotations

import json
from typing import Any

from homeo.observe.slo.definitions import Slo
from homeo.observe.slo.rules import DISPLAY_WINDOWS, allowed_errors, error_ratio

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def dashboard(slos: list[Slo]) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    for row, slo in enumerate(slos):
        y = row * 9
        budget = allowed_errors(slo)
        panels.append({"id": len(panels) + 1, "type": "row", "title": _title(slo),
                       "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                       "panels": []})
        panels.append(_panel(
            len(panels) + 1, "stat", f"{slo.name}: value over {slo.window}",
            [(f"1 - ({error_ratio(slo, slo.window)})", "value")],
            {"h": 8, "w": 6, "x": 0, "y": y + 1}, unit="percentunit",
            thresholds=[("red", None), ("green", slo.objective)],
        ))
        panels.append(_panel(
            len(panels) + 1, "stat", f"{slo.name}: error budget left",
            [(f"1 - ({error_ratio(slo, slo.window)}) / {budget}", "budget left")],
            {"h": 8, "w": 6, "x": 6, "y": y + 1}, unit="percentunit",
            thresholds=[("red", None), ("yellow", 0), ("green", 0.25)],
        ))
        panels.append(_panel(
            len(panels) + 1, "timeseries", f"{slo.name}: burn rate (1 spends the budget"
            f" over {slo.window})",
            [(f"({error_ratio(slo, window)}) / {budget}", window) for window in DISPLAY_WINDOWS],
            {"h": 8, "w": 12, "x": 12, "y": y + 1}, unit="none",
            thresholds=[("green", None), ("red", 14.4)],
        ))
    return {
        "title": "homeo SLOs",
        "uid": "homeo-slo",
        "tags": ["homeo", "slo"],
        "timezone": "utc",
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {"list": [{
            "name": "datasource", "type": "datasource", "query": "prometheus",
            "label": "Prometheus",
        }]},
        "panels": panels,
    }


def _title(slo: Slo) -> str:
    within = f"within {slo.threshold_seconds:g}s" if slo.threshold_seconds else ""
    what = {"run_success": "runs succeed", "step_latency": f"steps {within}",
            "api_latency": f"API requests {within}"}[slo.kind]
    scope = ", ".join(f"{k} {v}" for k, v in (("tenant", slo.tenant), ("agent", slo.agent),
                                             ("kind", slo.step_kind)) if v)
    return (f"{slo.name}: {slo.objective * 100:g}% of {what}"
            f"{f' ({scope})' if scope else ''} over {slo.window}")


def _panel(
    panel_id: int,
    kind: str,
    title: str,
    queries: list[tuple[str, str]],
    grid: dict[str, int],
    *,
    unit: str,
    thresholds: list[tuple[str, float | None]],
) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": [{"refId": chr(ord("A") + index), "datasource": DATASOURCE, "expr": expr,
                     "legendFormat": legend} for index, (expr, legend) in enumerate(queries)],
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": [
            {"color": color, "value": value} for color, value in thresholds]}},
            "overrides": []},
        "options": {},
    }


def render_dashboard(slos: list[Slo]) -> str:
    return json.dumps(dashboard(slos), indent=2) + "\n"
