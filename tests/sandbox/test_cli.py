"""`homeo sandbox run` and the sandbox part of `homeo doctor`, as subprocesses."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

HOMEO = Path(sys.executable).parent / "homeo"
README = (Path(__file__).parents[2] / "README.md").read_text()

pytestmark = pytest.mark.slow  # starts subprocesses


def homeo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    return subprocess.run([str(HOMEO), *args], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60)


def test_the_readme_sandbox_command_runs() -> None:
    line = next(line for line in README.splitlines() if "bin/homeo sandbox run" in line)
    args = shlex.split(line.split("  #")[0])[1:]
    done = homeo(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "42\n"
    assert re.fullmatch(r"homeo: exit 0 in \d+ ms\n", done.stderr)


def test_exit_status_mirrors_the_command_and_limits_are_reported() -> None:
    done = homeo("sandbox", "run", "--pids", "16", "--cpu", "0.5", "--", "sh", "-c",
                 "echo out; echo err >&2; echo x > note.txt; exit 7")
    assert done.returncode == 7
    assert done.stdout == "out\n"
    assert done.stderr.startswith("err\nhomeo: exit 7 in ") and "wrote note.txt" in done.stderr
    done = homeo("sandbox", "run", "--timeout", "300ms", "--", "sleep", "5")
    assert done.returncode == 137 and "timed out" in done.stderr
    done = homeo("sandbox", "run", "--memory", "64M", "--", "python3", "-c",
                 "b = bytearray(2**30)")
    assert done.returncode == 137 and "out of memory" in done.stderr


def test_json_reports_the_run_and_keeps_the_exit_status() -> None:
    done = homeo("sandbox", "run", "--json", "--", "sh", "-c",
                 "echo out; echo err >&2; echo x > note.txt; exit 7")
    assert done.returncode == 7, done.stderr
    result = json.loads(done.stdout)
    assert (result["exit_code"], result["stdout"], result["stderr"]) == (7, "out\n", "err\n")
    assert result["files"] == ["note.txt"] and result["timed_out"] is False
    assert result["duration_seconds"] > 0 and "bubblewrap" in result["layers"]
    refused = homeo("sandbox", "run", "--memory", "lots", "--json", "--", "true")
    assert refused.returncode == 2
    assert "HOMEO_SANDBOX_MEMORY='lots'" in json.loads(refused.stdout)["error"]


def test_bad_limits_are_refused_before_anything_runs() -> None:
    done = homeo("sandbox", "run", "--memory", "lots", "--", "true")
    assert done.returncode == 2 and "HOMEO_SANDBOX_MEMORY='lots'" in done.stderr
    done = homeo("sandbox", "run", "--", "true", HOMEO_SANDBOX_ALLOW_WITHOUT="bubblewrap")
    assert done.returncode == 2 and "only ['cgroups', 'seccomp']" in done.stderr


def test_doctor_reports_every_sandbox_layer() -> None:
    done = homeo("doctor")
    for layer in ("bubblewrap", "userns", "rlimits", "seccomp", "cgroup-memory",
                  "cgroup-pids", "cgroup-cpu"):
        assert re.search(rf"^ok\s+{layer}\s+\S", done.stdout, re.M), done.stdout
