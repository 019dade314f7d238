"""`homeo runs` (list, show, cancel, events), `--version` and `-h`, through
typer's CliRunner in this process, against a real SQLite file.

The runs are made by `homeo run` with the scripted agents of tests/support/scriptkit.py."""

from __future__ import annotations

import json
import re
import sys
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from typer.main import get_command

from homeo.backends import open_backends
from homeo.cli import app
from homeo.store.models import NewRun
from tests.support.clikit import homeo, no_homeo_env  # noqa: F401

SUPPORT = Path(__file__).parent / "support"
RUN_ID = r"run_[0-9a-f]{22}"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data folder with two runs of tenant `default`: calc (succeeded), then broken (failed)."""
    sys.path.insert(0, str(SUPPORT))
    try:
        import scriptkit
    finally:
        sys.path.remove(str(SUPPORT))
    agents = scriptkit.write_agents(tmp_path / "agents", ["calc", "broken"])
    folder = tmp_path / "data"
    for agent, task, code in (("calc", "6*7", 0), ("broken", "try", 1)):
        done = homeo("run", agent, task, "--agents-dir", str(agents), "--data-dir", str(folder))
        assert done.exit_code == code, done.stdout + done.stderr
    return folder


def run_ids(data: Path, *args: str) -> list[str]:
    listed = homeo("runs", "list", "--json", "--data-dir", str(data), *args)
    assert listed.exit_code == 0, listed.stderr
    return [run["id"] for run in json.loads(listed.stdout)["runs"]]


def test_runs_list_is_a_table_newest_first_with_filters(data: Path) -> None:
    listed = homeo("runs", "list", "--data-dir", str(data))
    assert listed.exit_code == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "AGENT", "STATUS", "CREATED", "TOKENS", "INPUT"]
    assert [row.split()[1:3] for row in rows] == [["broken", "failed"], ["calc", "succeeded"]]
    assert re.fullmatch(rf"{RUN_ID}  calc    succeeded  \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\dZ"
                        r"\s+\d+  6\*7", rows[1])

    failed = homeo("runs", "list", "--status", "failed", "--data-dir", str(data))
    assert [row.split()[1] for row in failed.stdout.splitlines()[1:]] == ["broken"]
    calc = homeo("runs", "list", "--agent", "calc", "--data-dir", str(data))
    assert [row.split()[1] for row in calc.stdout.splitlines()[1:]] == ["calc"]
    newest = run_ids(data, "--limit", "1")
    page = json.loads(homeo("runs", "list", "--json", "--limit", "1", "--data-dir",
                            str(data)).stdout)
    assert page["next_before"] == newest[0]
    assert run_ids(data, "--before", newest[0]) == run_ids(data)[1:]


def test_runs_list_refuses_an_unknown_status_and_says_when_nothing_matches(data: Path) -> None:
    bad = homeo("runs", "list", "--status", "done", "--data-dir", str(data))
    assert bad.exit_code == 2 and "'done' is not one of" in bad.stderr
    empty = homeo("runs", "list", "--tenant", "globex", "--data-dir", str(data))
    assert empty.exit_code == 0 and empty.stdout == ""
    assert empty.stderr == "homeo: no runs for tenant 'globex' match\n"


def test_runs_show_gives_status_output_usage_and_steps(data: Path) -> None:
    calc, broken = run_ids(data, "--agent", "calc")[0], run_ids(data, "--agent", "broken")[0]
    shown = homeo("runs", "show", calc, "--data-dir", str(data))
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"run {calc}  agent calc  tenant default  succeeded"
    assert re.fullmatch(r"  usage    0 in / \d+ out tokens", lines[2])
    assert lines[3:6] == ["  input    6*7", "  output   6*7 = 42", "steps (3)"]
    assert re.match(r"  step 0 model  model\s+succeeded \d+ ms  calls calculate "
                    r'\{"expression": "6\*7"\}$', lines[6])
    assert re.match(r"  step 1 tool   calculate\s+succeeded \d+ ms  42$", lines[7])

    failed = homeo("runs", "show", broken, "--data-dir", str(data)).stdout
    assert "  error    model scripted: scripted refusal: this model never answers" in failed

    detail = json.loads(homeo("runs", "show", calc, "--json", "--data-dir", str(data)).stdout)
    assert (detail["id"], detail["status"], detail["output"]) == (calc, "succeeded", "6*7 = 42")
    assert [step["name"] for step in detail["steps"]] == ["model", "calculate", "model"]
    assert set(detail["usage"]) == {"input_tokens", "output_tokens", "cost_usd"}


def test_runs_show_of_an_unknown_run_or_another_tenants_says_how_to_find_one(
    data: Path,
) -> None:
    calc = run_ids(data, "--agent", "calc")[0]
    for args in (["nope"], [calc, "--tenant", "globex"]):
        missing = homeo("runs", "show", *args, "--data-dir", str(data))
        assert missing.exit_code == 1
        tenant = "globex" if "--tenant" in args else "default"
        assert missing.stderr == (f"homeo: no run {args[0]!r} for tenant {tenant!r};"
                                  " `homeo runs list` shows them\n")


def test_runs_cancel_cancels_a_queued_run_and_refuses_a_finished_one(data: Path) -> None:
    backends = open_backends(f"sqlite:///{data / 'homeo.db'}")
    try:
        queued, _ = backends.store.create_run(NewRun(tenant_id="default", agent="calc",
                                                     input="1+1"))
    finally:
        backends.close()
    cancelled = homeo("runs", "cancel", queued.id, "--json", "--data-dir", str(data))
    assert cancelled.exit_code == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    assert run_ids(data, "--status", "cancelled") == [queued.id]

    again = homeo("runs", "cancel", queued.id, "--data-dir", str(data))
    assert again.exit_code == 1
    assert again.stderr == f"homeo: run {queued.id} already cancelled; nothing to cancel\n"
    missing = homeo("runs", "cancel", "nope", "--data-dir", str(data))
    assert missing.exit_code == 1 and "no run 'nope' for tenant 'default'" in missing.stderr


def test_runs_events_of_an_ended_run_prints_its_steps_and_how_it_ended(data: Path) -> None:
    calc, broken = run_ids(data, "--agent", "calc")[0], run_ids(data, "--agent", "broken")[0]
    followed = homeo("runs", "events", calc, "--data-dir", str(data))
    assert followed.exit_code == 0, followed.stderr
    lines = followed.stdout.splitlines()
    assert [line.split()[1:4] for line in lines[:3]] == [
        ["0", "model", "model"], ["1", "tool", "calculate"], ["2", "model", "model"]]
    assert re.fullmatch(r"succeeded \(0 in / \d+ out tokens\)", lines[3])
    assert lines[4:] == ["6*7 = 42"]

    failed = homeo("runs", "events", broken, "--data-dir", str(data))
    assert failed.exit_code == 1
    assert failed.stdout.splitlines()[-1].startswith("failed: model scripted: scripted refusal")

    events = [json.loads(line) for line in
              homeo("runs", "events", calc, "--json", "--data-dir", str(data)).stdout.splitlines()]
    assert [event["event"] for event in events] == ["step", "step", "step", "run", "end"]
    assert events[-1]["data"] == {"id": calc, "status": "succeeded"}
    assert events[3]["data"]["output"] == "6*7 = 42"


def test_version() -> None:
    shown = homeo("--version")
    assert shown.exit_code == 0
    assert shown.stdout == f"homeo {version('homeo')}\n"


def every_command(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += every_command(command, (*path, name))
        else:
            found.append((*path, name))
    return found


COMMANDS = every_command(get_command(app))  # type: ignore[arg-type]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_h_is_help_on_every_command(path: tuple[str, ...]) -> None:
    short, long = homeo(*path, "-h"), homeo(*path, "--help")
    assert short.exit_code == 0, short.stderr
    assert re.search(rf"Usage: (homeo|root) {' '.join(path)}".rstrip(), short.stdout)
    assert short.stdout == long.stdout


def test_runs_show_step_fork_and_prune(data: Path) -> None:
    broken, calc = run_ids(data)
    shown = homeo("runs", "show", calc, "--step", "1", "--data-dir", str(data))
    assert shown.exit_code == 0, shown.stderr
    assert "calculate" in shown.stdout and "next: model" in shown.stdout
    assert '"role": "tool"' in shown.stdout
    as_json = json.loads(homeo("runs", "show", calc, "--step", "2", "--json",
                               "--data-dir", str(data)).stdout)
    assert as_json["state"]["output"] == "6*7 = 42" and as_json["next"] == "__end__"
    failed = homeo("runs", "show", broken, "--step", "0", "--data-dir", str(data))
    assert "state: none (step 0 failed, so it left no checkpoint)" in failed.stdout

    forked = homeo("runs", "fork", calc, "--from-step", "1", "--state", '{"data": {"a": 1}}',
                   "--data-dir", str(data))
    assert forked.exit_code == 0, forked.stderr
    fork_id = re.search(rf"forked run ({RUN_ID}) from step 1 of run {calc}; it begins at step 2",
                        forked.stderr).group(1)
    shown = homeo("runs", "show", fork_id, "--data-dir", str(data))
    assert f"forked   from run {calc} after step 1" in shown.stdout
    refused = homeo("runs", "fork", broken, "--from-step", "0", "--data-dir", str(data))
    assert refused.exit_code == 1 and "only a step that succeeded" in refused.stderr
    bad = homeo("runs", "fork", calc, "--from-step", "1", "--state", "[1]",
                "--data-dir", str(data))
    assert bad.exit_code == 2 and "--state must be a JSON object" in bad.stderr

    counted = homeo("prune", "--older-than", "1ms", "--dry-run", "--json", "--data-dir", str(data))
    assert counted.exit_code == 0, counted.stderr
    figures = json.loads(counted.stdout)
    assert figures["runs"] == 2 and figures["checkpoints"] == 3 and figures["dry_run"] is True
    assert figures["bytes"] > 0 and figures["older_than_seconds"] == 0.001
    dry = homeo("prune", "--older-than", "1ms", "--dry-run", "--data-dir", str(data))
    assert dry.exit_code == 0, dry.stderr
    assert re.search(r"would remove 3 step checkpoints \([\d,]+ bytes of JSON\) of 2 finished"
                     r" runs \(finished more than 1ms ago\)", dry.stdout), dry.stdout
    done = homeo("prune", "--older-than", "1ms", "--data-dir", str(data))
    assert re.search(r"removed 3 step checkpoints .* of 2 finished runs", done.stdout)
    gone = homeo("runs", "show", calc, "--step", "1", "--data-dir", str(data))
    assert gone.exit_code == 1 and "were pruned at" in gone.stderr
    assert "would remove 0 step" in homeo("prune", "--dry-run", "--data-dir", str(data)).stdout
    wrong = homeo("prune", "--older-than", "soon", "--data-dir", str(data))
    assert wrong.exit_code == 2 and "is not a duration" in wrong.stderr
