"""The SLO file: the defaults load, and every mistake is named by file, SLO and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeo.config import Settings, SettingsError, load_settings
from homeo.observe.slo.definitions import (
    SloFileError,
    format_window,
    load_slos,
    parse_slos,
    window_seconds,
)


def test_the_defaults_cover_runs_steps_and_the_api() -> None:
    slos = load_slos()
    assert [(s.name, s.kind, s.objective, s.window) for s in slos] == [
        ("runs-succeed", "run_success", 0.99, "30d"),
        ("model-steps-fast", "step_latency", 0.95, "30d"),
        ("api-fast", "api_latency", 0.99, "30d"),
    ]
    assert Settings().slo_file is None


def test_a_file_with_every_kind_and_scope(tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text("""
slos:
  - {name: calc-runs, kind: run_success, objective: 0.999, window: 7d, agent: calc, tenant: acme}
  - {name: p95-steps, kind: step_latency, objective: 0.95, window: 1h, threshold_seconds: 5}
  - {name: api, kind: api_latency, objective: 0.99, window: 2w, threshold_seconds: 0.25}
""")
    slos = load_slos(path)
    assert [(s.agent, s.tenant, s.seconds) for s in slos] == [
        ("calc", "acme", 7 * 86400), (None, None, 3600), (None, None, 14 * 86400)]
    assert load_settings(slo_file=path).slo_file == path


@pytest.mark.parametrize(("entry", "problem"), [
    ("{name: a, kind: run_success, objective: 0.99}",
     "slos[0] (a) field window: Field required"),
    ("{name: a, kind: run_success, objective: 99, window: 1h}",
     "slos[0] (a) field objective=99: Input should be less than 1"),
    ("{name: a, kind: run_success, objective: 0.9, window: 1 day}",
     "slos[0] (a) field window='1 day': window '1 day' must be a whole number and a unit"),
    ("{name: a, kind: run_success, objective: 0.9, window: 5m}",
     "slos[0] (a) field window='5m': window '5m' is shorter than 1h"),
    ("{name: a, kind: latency, objective: 0.9, window: 1h}",
     "slos[0] (a) field kind='latency': Input should be 'run_success', 'step_latency'"),
    ("{name: a, kind: step_latency, objective: 0.9, window: 1h}",
     "slos[0] (a): a step_latency SLO needs threshold_seconds"),
    ("{name: a, kind: step_latency, objective: 0.9, window: 1h, threshold_seconds: 3}",
     "slos[0] (a): threshold_seconds 3 is not a bucket bound of homeo_step_seconds;"
     " use one of 0.001, 0.005"),
    ("{name: a, kind: api_latency, objective: 0.9, window: 1h, threshold_seconds: 0.5,"
     " tenant: acme}",
     "slos[0] (a): tenant and agent scope run_success SLOs; a api_latency SLO covers"),
    ("{name: a, kind: run_success, objective: 0.9, window: 1h, step_kind: model}",
     "slos[0] (a): step_kind is for step_latency SLOs"),
    ("{name: a, kind: run_success, objective: 0.9, window: 1h, owner: me}",
     "slos[0] (a) field owner='me': Extra inputs are not permitted"),
    ("{name: Bad Name, kind: run_success, objective: 0.9, window: 1h}",
     "slos[0] (Bad Name) field name='Bad Name': String should match pattern"),
])
def test_each_mistake_names_the_file_slo_and_field(entry: str, problem: str) -> None:
    with pytest.raises(SloFileError) as raised:
        parse_slos(f"slos:\n  - {entry}\n", "/etc/homeo/slo.yaml")
    assert str(raised.value).startswith(f"/etc/homeo/slo.yaml: {problem}"), str(raised.value)


def test_file_level_mistakes(tmp_path: Path) -> None:
    with pytest.raises(SloFileError, match=r"^f.yaml: not valid YAML at line 3 column 1 \(expected the node content"):
        parse_slos("slos:\n  - [\n", "f.yaml")
    with pytest.raises(SloFileError, match=r"^f.yaml: expected a mapping with a list `slos:`"):
        parse_slos("- name: a\n", "f.yaml")
    with pytest.raises(SloFileError, match=r"two SLOs are named 'a'; names must be unique"):
        parse_slos("slos:\n  - {name: a, kind: run_success, objective: 0.9, window: 1h}\n"
                   "  - {name: a, kind: run_success, objective: 0.9, window: 1h}\n", "f.yaml")
    missing = tmp_path / "none.yaml"
    with pytest.raises(SloFileError, match=rf"cannot read SLO file {missing}: No such file"):
        load_slos(missing)


def test_a_bad_file_stops_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text("slos:\n  - {name: a, kind: run_success, objective: 2, window: 1h}\n")
    with pytest.raises(SettingsError, match=rf"HOMEO_SLO_FILE=.*{path}: slos\[0\] \(a\) field"
                                            r" objective=2: Input should be less than 1"):
        load_settings(slo_file=path)


def test_windows_read_and_write_in_prometheus_units() -> None:
    assert [window_seconds(w) for w in ("90s", "5m", "1h", "30d", "2w")] == [
        90, 300, 3600, 30 * 86400, 14 * 86400]
    assert [format_window(s) for s in (90, 300, 7200, 86400, 14 * 86400)] == [
        "90s", "5m", "2h", "1d", "2w"]
    with pytest.raises(ValueError, match="must be a whole number and a unit"):
        window_seconds("0h")
