"""The `python` and `shell` tools, through the registry as an agent sees them."""

from __future__ import annotations

import pytest

from homeo.tools.registry import ToolError, load_tool


def test_the_python_tool_runs_code_in_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEO_SANDBOX_TIMEOUT", "5s")
    python = load_tool("homeo.tools.builtin:python")
    assert python.parameters["required"] == ["code"]
    code = ("import os, pathlib\n"
            "rows = pathlib.Path('in.txt').read_text().split()\n"
            "pathlib.Path('out.txt').write_text(str(len(rows)))\n"
            "print(os.getuid(), rows)")
    report = python.function(**python.validate({"code": code, "files": {"in.txt": "a b c"}}))
    assert report["exit_code"] == 0, report
    assert report["stdout"] == "65534 ['a', 'b', 'c']\n"
    assert report["files"] == {"in.txt": "a b c", "out.txt": "3"}
    attack = "open('/etc/shadow').read()"
    report = python.function(**python.validate({"code": attack}))
    assert report["exit_code"] == 1 and "FileNotFoundError" in report["stderr"]


def test_the_shell_tool_runs_in_the_same_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEO_SANDBOX_TIMEOUT", "1s")
    shell = load_tool("homeo.tools.builtin:shell")
    report = shell.function(**shell.validate({"command": "id -u; printf x > f; sleep 10"}))
    assert report["stdout"] == "65534\n" and report["files"] == {"f": "x"}
    assert report["timed_out"] and report["exit_code"] == 137
    with pytest.raises(ToolError, match="command"):
        shell.validate({"cmd": "ls"})
