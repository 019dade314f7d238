"""A bad agent file is reported by `homeo agents` and stops `homeo serve` and
`homeo worker` at start, as subprocesses the way a user runs them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HOMEO = Path(sys.executable).parent / "homeo"
COMMAND_DEADLINE_SECONDS = 60

pytestmark = pytest.mark.slow  # starts subprocesses


def homeo(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `homeo ARGS` with none of the caller's HOMEO_* settings."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    return subprocess.run([str(HOMEO), *args], env={**clean, "COLUMNS": "60"},
                          capture_output=True, text=True, timeout=COMMAND_DEADLINE_SECONDS)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "fine.yaml").write_text("name: fine\nmodel: local\n")
    (agents / "typo.yaml").write_text("name: typo\nmodel: lokal\n"
                                      "tools: [homeo.examples.tools:calculate, missing_pkg:run]\n")
    return agents


def test_agents_lists_the_good_files_and_prints_each_problem(folder: Path) -> None:
    done = homeo("agents", "--agents-dir", str(folder))
    assert done.returncode == 1
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["fine"]
    typo = folder / "typo.yaml"
    assert done.stderr.splitlines() == [
        f"homeo: {typo}: model: unknown model 'lokal': use local, local:/path.gguf, minilm,"
        " openai:MODEL, scripted:module:function or an alias from HOMEO_MODELS"
        " (default, embedding)",
        f"homeo: {typo}: tools[1]: tool 'missing_pkg:run': cannot import 'missing_pkg': No module"
        " named 'missing_pkg' (fix the reference, or install the package that provides it)",
    ]


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_refuse_to_start_with_a_bad_agent_file(
    command: str, folder: Path, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = ["--port", str(port)] if command == "serve" else []
    done = homeo(command, *options, "--agents-dir", str(folder),
                 "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"homeo: {folder / 'typo.yaml'}: model: unknown model 'lokal': use local,"
        " local:/path.gguf, minilm, openai:MODEL, scripted:module:function or an alias from"
        " HOMEO_MODELS (default, embedding) (and 1 more: run `homeo agents` to see them all)"
    ]
