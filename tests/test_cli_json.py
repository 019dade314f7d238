"""The command line's promises to scripts and people: `homeo` alone says what
to do first, the exit statuses the README lists (a sample of each; 130 is in
tests/test_cli.py's Ctrl-C tests), `--json` on run, agents, doctor and keys,
and shell completion. Through typer's CliRunner against real SQLite files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from homeo.cli import app
from tests.support.clikit import homeo  # noqa: F401

SUPPORT = Path(__file__).parent / "support"
sys.path.insert(0, str(SUPPORT))
import scriptkit  # noqa: E402
import waitkit  # noqa: E402


@pytest.fixture(autouse=True)
def no_homeo_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("HOMEO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(waitkit.LOG_ENV, str(tmp_path / "effects.log"))


@pytest.fixture
def where(tmp_path: Path) -> list[str]:
    """--data-dir and --agents-dir: scriptkit's echo and broken, waitkit's payer."""
    folder = scriptkit.write_agents(tmp_path / "agents", ["echo", "broken"])
    (folder / "payer.yaml").write_text("name: payer\nmodel: scripted:waitkit:payer_model\n"
                                       "tools: [waitkit:wire_money]\n")
    return ["--data-dir", str(tmp_path / "data"), "--agents-dir", str(folder)]


def test_homeo_alone_says_what_to_do_first() -> None:
    result = homeo()
    assert result.exit_code == 0
    assert "To begin:" in result.stdout
    for command in ("homeo doctor", "homeo run ", "homeo serve", "--install-completion"):
        assert command in result.stdout


def test_exit_statuses(where: list[str], tmp_path: Path) -> None:
    assert homeo("run", "echo", "hi", *where).exit_code == 0
    assert homeo("run", "broken", "hi", *where).exit_code == 1
    assert homeo("run", "nobody", "hi", *where).exit_code == 1
    assert homeo("keys", "revoke", "nope", "--data-dir", str(tmp_path / "data")).exit_code == 1
    assert homeo("nosuch").exit_code == 2
    assert homeo("run", "echo").exit_code == 2  # the input is missing
    assert homeo("run", "echo", "hi", "--workers", "1").exit_code == 2  # no such option
    assert homeo("serve", "--port", "0x").exit_code == 2
    waiting = homeo("run", "payer", "5", *where)
    assert waiting.exit_code == 3 and "homeo runs approve" in waiting.stdout


def test_run_json_prints_the_run_as_the_api_shows_it(where: list[str]) -> None:
    done = homeo("run", "echo", "hi", *where, "--json")
    assert done.exit_code == 0
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded" and run["output"] == "echo: hi"
    assert [step["kind"] for step in run["steps"]] == ["model"]
    waiting = homeo("run", "payer", "5", *where, "--json")
    assert waiting.exit_code == 3
    run = json.loads(waiting.stdout)
    assert run["status"] == "waiting" and run["waiting_for"]["kind"] == "approval"


def test_agents_doctor_and_keys_print_json(where: list[str], tmp_path: Path) -> None:
    agents = json.loads(homeo("agents", "--agents-dir", where[3], "--json").stdout)
    assert {a["name"] for a in agents} == {"echo", "broken", "payer"}
    assert set(agents[0]) == {"name", "description", "model", "tools", "max_steps"}

    checks = json.loads(homeo("doctor", "--data-dir", str(tmp_path / "data"), "--json").stdout)
    assert {"sqlite"} <= {check["name"] for check in checks}
    assert all(set(check) == {"name", "status", "detail", "fix"} for check in checks)

    data = ["--data-dir", str(tmp_path / "data")]
    made = json.loads(homeo("keys", "create", "--name", "ci", *data, "--json").stdout)
    assert made["key"].startswith("hk_") and made["active"] and "secret_hash" not in made
    listed = json.loads(homeo("keys", "list", *data, "--json").stdout)
    assert [key["id"] for key in listed] == [made["id"]]
    revoked = homeo("keys", "revoke", made["id"], *data, "--json")
    assert json.loads(revoked.stdout)["active"] is False


def test_shell_completion_is_offered() -> None:
    script = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="homeo")
    assert script.exit_code == 0 and "_HOMEO_COMPLETE=complete_bash" in script.stdout


# Commands that serve until stopped: no one result to print (their logs are
# JSON lines already, HOMEO_LOG_JSON); `mcp` speaks JSON-RPC on stdio.
SERVERS = {"serve", "worker", "mcp"}


def commands(command, path: tuple[str, ...] = ()):  # noqa: ANN001, ANN201
    """Every leaf command of the typer tree, with its path."""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def test_every_command_takes_json() -> None:
    import typer.main

    found = dict(commands(typer.main.get_command(app)))
    assert {"runs list", "keys create", "prune", "audit verify"} <= set(found)
    without = {name for name, command in found.items()
               if not any("--json" in getattr(p, "opts", ()) for p in command.params)}
    assert without == SERVERS, "every command but the servers takes --json"
