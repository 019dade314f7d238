"""The Prometheus rules generated from the SLOs pass `promtool check rules`
(Debian's `prometheus` package; scripts/setup installs it), and their alerts
follow the SRE workbook's windows and burn rates."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from homeo.observe.slo.definitions import load_slos, parse_slos
from homeo.observe.slo.rules import alert_windows, error_ratio, render_rules
from tests.conftest import IN_CI

CUSTOM = parse_slos("""
slos:
  - {name: acme-calc, kind: run_success, objective: 0.999, window: 7d, tenant: acme, agent: calc}
  - {name: steps, kind: step_latency, objective: 0.95, window: 1h, threshold_seconds: 2.5}
  - {name: api, kind: api_latency, objective: 0.99, window: 30d, threshold_seconds: 0.25}
""", "test")


def promtool() -> str:
    """scripts/setup unpacks promtool next to the venv's python, unless the
    machine has one on its PATH already."""
    beside = Path(sys.executable).parent / "promtool"
    found = str(beside) if beside.exists() else shutil.which("promtool")
    if found is None:
        message = "promtool is missing: scripts/setup unpacks it (apt-get download prometheus)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.mark.parametrize("slos", [load_slos(), CUSTOM], ids=["defaults", "custom"])
def test_promtool_accepts_the_rules(slos: list, tmp_path: Path) -> None:
    path = tmp_path / "homeo-slo.rules.yaml"
    path.write_text(render_rules(slos))
    checked = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    groups = yaml.safe_load(path.read_text())["groups"]
    rules = sum(len(group["rules"]) for group in groups)
    assert f"SUCCESS: {rules} rules found" in checked.stdout


def test_a_30_day_slo_gets_the_workbook_alerts() -> None:
    runs = load_slos()[0]
    assert [(t.severity, str(t.factor), long, short) for t, long, short in alert_windows(runs)] == [
        ("page", "14.4", "1h", "5m"), ("page", "6", "6h", "30m"),
        ("ticket", "3", "1d", "2h"), ("ticket", "1", "3d", "6h")]
    alerts = [rule for rule in yaml.safe_load(render_rules([runs]))["groups"][0]["rules"]
              if "alert" in rule]
    assert [alert["labels"]["severity"] for alert in alerts] == ["page", "ticket"]
    assert alerts[0]["expr"] == (
        '(homeo:slo_errors:ratio_rate1h{slo="runs-succeed"} > 0.144'
        ' and homeo:slo_errors:ratio_rate5m{slo="runs-succeed"} > 0.144)'
        ' or (homeo:slo_errors:ratio_rate6h{slo="runs-succeed"} > 0.06'
        ' and homeo:slo_errors:ratio_rate30m{slo="runs-succeed"} > 0.06)')


def test_shorter_windows_scale_the_alerts_down_to_a_floor() -> None:
    week, hour = CUSTOM[0], CUSTOM[1]
    assert [(long, short) for _, long, short in alert_windows(week)] == [
        ("14m", "1m"), ("84m", "7m"), ("336m", "28m"), ("1008m", "84m")]
    # An hour-long SLO: the two page tiers land on the same windows; the lower burn rate stays.
    assert [(t.severity, str(t.factor), long, short)
            for t, long, short in alert_windows(hour)] == [
        ("page", "6", "5m", "1m"), ("ticket", "3", "5m", "1m"), ("ticket", "1", "6m", "1m")]


def test_error_ratios_read_the_metrics_homeo_exports() -> None:
    assert error_ratio(CUSTOM[0], "5m") == (
        '(sum(rate(homeo_runs_finished_total{status="failed",tenant="acme",agent="calc"}[5m]))'
        ' or vector(0)) / sum(rate(homeo_runs_finished_total{status=~"succeeded|failed",'
        'tenant="acme",agent="calc"}[5m]))')
    assert error_ratio(CUSTOM[1], "1h") == (
        '1 - sum(rate(homeo_step_seconds_bucket{le="2.5"}[1h]))'
        " / sum(rate(homeo_step_seconds_count[1h]))")
    assert error_ratio(load_slos()[1], "1h") == (
        '1 - sum(rate(homeo_step_seconds_bucket{le="30.0",kind="model"}[1h]))'
        ' / sum(rate(homeo_step_seconds_count{kind="model"}[1h]))')
