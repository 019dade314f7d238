"""`homeo slo` (table, --json, --tenant), `homeo slo rules` and `homeo slo
dashboard`, through typer's CliRunner against a real SQLite file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from homeo.backends import open_backends
from homeo.store.models import NewRun
from tests.support.clikit import homeo, no_homeo_env  # noqa: F401


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Runs that ended ten minutes ago: default 3 succeeded, 1 failed; globex 1 failed."""
    folder = tmp_path / "data"
    folder.mkdir()
    backends = open_backends(f"sqlite:///{folder / 'homeo.db'}")
    ended = time.time() - 600
    try:
        for tenant, status in [("default", "succeeded")] * 3 + [("default", "failed"),
                                                                 ("globex", "failed")]:
            run, _ = backends.store.create_run(
                NewRun(tenant_id=tenant, agent="echo", input="x"), now=ended - 1)
            backends.store.transition_run(tenant, run.id, status, allowed_from={"queued"},
                                          now=ended)
    finally:
        backends.close()
    return folder


def test_slo_table_over_every_tenant(data: Path) -> None:
    shown = homeo("slo", "--data-dir", str(data))
    assert shown.exit_code == 0, shown.stderr
    header, runs, steps, api = shown.stdout.splitlines()
    assert header.split() == ["SLO", "objective", "window", "value", "events", "budget", "left",
                              "burn", "5m", "burn", "1h", "burn", "6h"]
    assert runs.split() == ["runs-succeed", "99.00%", "30d", "60.00%", "5", "-3900.00%", "-",
                            "40.00", "40.00"]
    assert steps.split() == ["model-steps-fast", "95.00%", "30d", "-", "0", "100.00%", "-", "-",
                             "-"]
    assert "API latency is counted by the serving process" in api


def test_slo_json_for_one_tenant(data: Path) -> None:
    shown = homeo("slo", "--json", "--tenant", "default", "--data-dir", str(data))
    assert shown.exit_code == 0, shown.stderr
    body = json.loads(shown.stdout)
    runs = body["slos"][0]
    assert (body["tenant"], runs["name"], runs["scope"]) == ("default", "runs-succeed",
                                                             "tenant default")
    assert (runs["events"], runs["good_events"], runs["value"]) == (4, 3, 0.75)
    assert runs["burn_rates"] == {"5m": None, "1h": 25.0, "6h": 25.0}


def test_slo_rules_and_dashboard_follow_the_slo_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text("slos:\n  - {name: calc, kind: run_success, objective: 0.9, window: 7d,"
                    " agent: calc}\n")
    monkeypatch.setenv("HOMEO_SLO_FILE", str(path))
    out = tmp_path / "rules.yaml"
    written = homeo("slo", "rules", "-o", str(out))
    assert written.exit_code == 0 and f"wrote {out}" in written.stderr
    groups = yaml.safe_load(out.read_text())["groups"]
    assert [group["name"] for group in groups] == ["homeo-slo-calc"]
    shown = homeo("slo", "dashboard")
    assert shown.exit_code == 0, shown.stderr
    board = json.loads(shown.stdout)
    assert board["panels"][0]["title"] == "calc: 90% of runs succeed (agent calc) over 7d"


def test_a_bad_slo_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text("slos:\n  - {name: calc, kind: run_success, objective: 0.9}\n")
    monkeypatch.setenv("HOMEO_SLO_FILE", str(path))
    for args in (["slo", "rules"], ["slo", "--data-dir", str(tmp_path)]):
        shown = homeo(*args)
        assert shown.exit_code == 2
        assert f"invalid setting HOMEO_SLO_FILE='{path}'" in shown.stderr
        assert f"{path}: slos[0] (calc) field window: Field required" in shown.stderr


def test_slo_rules_and_dashboard_print_json(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text("slos:\n  - {name: calc, kind: run_success, objective: 0.9, window: 7d,"
                    " agent: calc}\n")
    monkeypatch.setenv("HOMEO_SLO_FILE", str(path))
    out = tmp_path / "rules.yaml"
    written = homeo("slo", "rules", "-o", str(out), "--json")
    assert written.exit_code == 0, written.stderr
    body = json.loads(written.stdout)
    assert (body["slos"], body["out"]) == (["calc"], str(out))
    assert body["rules"] == yaml.safe_load(out.read_text())
    board = json.loads(homeo("slo", "dashboard", "--json").stdout)
    assert (board["slos"], board["out"]) == (["calc"], None)
    assert board["dashboard"]["panels"][0]["title"].startswith("calc: 90% of runs succeed")

    path.write_text("slos:\n  - {name: calc, kind: run_success, objective: 0.9}\n")
    for command in ("rules", "dashboard"):
        bad = homeo("slo", command, "--json")
        assert bad.exit_code == 2 and json.loads(bad.stdout)["exit_code"] == 2
        assert "field window: Field required" in json.loads(bad.stdout)["error"]
