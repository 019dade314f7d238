"""`homeo run` leaves a run that waits for a person, and `homeo runs approve |
reject | input` answer it, through typer's CliRunner against a real SQLite file."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.runtime import Runtime
from tests.support.clikit import homeo  # noqa: F401

SUPPORT = Path(__file__).parent / "support"
sys.path.insert(0, str(SUPPORT))
import waitkit  # noqa: E402

RUN_ID = r"run_[0-9a-f]{22}"


@pytest.fixture(autouse=True)
def no_homeo_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("HOMEO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(waitkit.LOG_ENV, str(tmp_path / "effects.log"))


def agents(folder: Path) -> Path:
    folder.mkdir()
    (folder / "payer.yaml").write_text(
        "name: payer\nmodel: scripted:waitkit:payer_model\ntools: [waitkit:wire_money]\n")
    (folder / "greeter.yaml").write_text(
        "name: greeter\nmodel: scripted:waitkit:greeter_model\ntools: [waitkit:greet_person]\n")
    return folder


def work(data: Path, folder: Path) -> None:
    """What `homeo worker` does, in this process, until the queue is empty."""
    runtime = Runtime.open(Settings(data_dir=data, agents_dir=folder))
    try:
        runtime.publish_agents()
        asyncio.run(runtime.worker(1).run_until_idle())
    finally:
        asyncio.run(runtime.aclose())


def test_an_approval_from_the_command_line(tmp_path: Path) -> None:
    folder, data = agents(tmp_path / "agents"), tmp_path / "data"
    where = ("--data-dir", str(data))
    ran = homeo("run", "payer", "500", "--agents-dir", str(folder), *where)
    assert ran.exit_code == 3, ran.stdout + ran.stderr
    assert 'waiting for approval: wire_money {"amount": 500}' in ran.stdout
    run_id = re.search(RUN_ID, ran.stdout).group(0)
    assert f"homeo runs approve {run_id}" in ran.stdout

    shown = homeo("runs", "show", run_id, *where)
    assert f"{run_id}  agent payer" in shown.stdout and "waiting for approval" in shown.stdout

    bad = homeo("runs", "approve", run_id, "--arguments", "fifty", *where)
    assert bad.exit_code == 1 and "--arguments is not JSON" in bad.stderr
    bad = homeo("runs", "approve", run_id, "--arguments", "[50]", *where)
    assert bad.exit_code == 1 and "must be a JSON object" in bad.stderr
    wrong = homeo("runs", "input", run_id, "yes", *where)
    assert wrong.exit_code == 1
    assert "waits for approval of a call to 'wire_money', not for an answer" in wrong.stderr
    missing = homeo("runs", "approve", "run_0123456789abcdef012345", *where)
    assert missing.exit_code == 1 and "no run 'run_0123456789abcdef012345'" in missing.stderr

    approved = homeo("runs", "approve", run_id, "--arguments", '{"amount": 5}', *where)
    assert approved.exit_code == 0 and "queued again" in approved.stderr
    again = homeo("runs", "reject", run_id, *where)
    assert again.exit_code == 1 and f"run {run_id} is queued, not for an approval" in again.stderr

    work(data, folder)
    assert waitkit.logged(tmp_path / "effects.log") == ["wire 5"]
    done = homeo("runs", "show", run_id, *where)
    assert "succeeded" in done.stdout and "wired 5 EUR" in done.stdout


def test_a_question_answered_from_the_command_line(tmp_path: Path) -> None:
    folder, data = agents(tmp_path / "agents"), tmp_path / "data"
    where = ("--data-dir", str(data))
    ran = homeo("run", "greeter", "hi", "--agents-dir", str(folder), *where)
    assert ran.exit_code == 3
    assert "waiting for an answer: What is your name?" in ran.stdout
    run_id = re.search(RUN_ID, ran.stdout).group(0)
    empty = homeo("runs", "input", run_id, "  ", *where)
    assert empty.exit_code == 1 and "the answer is empty" in empty.stderr
    assert homeo("runs", "input", run_id, "Grace", *where).exit_code == 0
    work(data, folder)
    assert waitkit.logged(tmp_path / "effects.log") == ["greet Grace"]
