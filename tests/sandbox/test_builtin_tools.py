"""The `python` and `shell` tools, through the registry as an agent sees them."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from homeo.config import load_settings
from homeo.tools.context import ToolContext, ToolSettings
from homeo.tools.registry import Tool, ToolError, load_tool


def run_tool(tool: Tool, arguments: dict[str, Any],
             settings: ToolSettings | None = None) -> dict[str, Any]:
    """Call the tool as a worker does: with the operator's settings (the test's
    environment) in its context."""
    settings = settings or ToolSettings.from_settings(load_settings())
    context = ToolContext("t", "r", settings=settings)
    return asyncio.run(tool.function(**arguments, context=context))


def test_the_python_tool_runs_code_in_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEO_SANDBOX_TIMEOUT", "5s")
    python = load_tool("homeo.tools.builtin:python")
    assert python.parameters["required"] == ["code"]
    code = ("import os, pathlib\n"
            "rows = pathlib.Path('in.txt').read_text().split()\n"
            "pathlib.Path('out.txt').write_text(str(len(rows)))\n"
            "print(os.getuid(), rows)")
    report = run_tool(python, python.validate({"code": code, "files": {"in.txt": "a b c"}}))
    assert report["exit_code"] == 0, report
    assert report["stdout"] == "65534 ['a', 'b', 'c']\n"
    assert report["files"] == {"in.txt": "a b c", "out.txt": "3"}
    attack = "open('/etc/shadow').read()"
    report = run_tool(python, python.validate({"code": attack}))
    assert report["exit_code"] == 1 and "FileNotFoundError" in report["stderr"]


def test_the_shell_tool_runs_in_the_same_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEO_SANDBOX_TIMEOUT", "1s")
    shell = load_tool("homeo.tools.builtin:shell")
    settings = ToolSettings.from_settings(load_settings())
    report = run_tool(shell, shell.validate({"command": "id -u; printf x > f; sleep 10"}),
                      settings)
    assert report["stdout"] == "65534\n" and report["files"] == {"f": "x"}
    assert report["timed_out"] and report["exit_code"] == 137
    # The process's tally (a worker reports it in its heartbeat) counts it.
    run_tool(shell, shell.validate({"command": "true"}), settings)
    counts = settings.sandbox_tally.counts()
    assert (counts.runs, counts.timeouts, counts.ooms) == (2, 1, 0)
    with pytest.raises(ToolError, match="command"):
        shell.validate({"cmd": "ls"})


def test_the_files_a_tool_returns_are_capped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    # 5,000 files with 200-character names: about 1 MB of names alone, and
    # every byte of the tool's result is stored in the step.
    monkeypatch.setenv("HOMEO_SANDBOX_TIMEOUT", "30s")
    monkeypatch.setenv("HOMEO_SANDBOX_OUTPUT_BYTES", "64K")
    python = load_tool("homeo.tools.builtin:python")
    code = ("for n in range(5000):\n"
            "    open(f'{n:05d}' + 'x' * 195, 'w').write('y' * 10)\n"
            "open('big', 'w').write('z' * 100_000)\n")
    report = run_tool(python, python.validate({"code": code}))
    assert report["exit_code"] == 0, report["stderr"]
    assert len(report["files"]) == 100
    assert sum(len(name) + len(text) for name, text in report["files"].items()) <= 64 * 1024
    assert report["files_omitted"] == (
        "4901 more files (1129003 bytes of names and contents) were left out: the tool returns"
        " at most 100 files and 65536 bytes of names and contents, smallest first; write fewer"
        " files, or print what matters")
    small = run_tool(python, python.validate({"code": "open('a', 'w').write('b')"}))
    assert small["files"] == {"a": "b"} and "files_omitted" not in small


def test_cancelling_a_sandboxed_call_kills_its_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancelled run's tool call must not keep computing in the sandbox."""
    monkeypatch.setenv("HOMEO_SANDBOX_TIMEOUT", "120s")
    shell = load_tool("homeo.tools.builtin:shell")
    sleeper = b"sleep\x00987.5\x00"  # a command line no other test runs

    async def main() -> bool:
        context = ToolContext("t", "r", settings=ToolSettings.from_settings(load_settings()))
        call = asyncio.create_task(shell.function(command="exec sleep 987.5", context=context))
        deadline = time.monotonic() + 60
        while not _running(sleeper):
            assert time.monotonic() < deadline, "the sandboxed command never started"
            await asyncio.sleep(0.02)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return call.cancelled()

    assert asyncio.run(main())
    assert not _running(sleeper)  # killed before the cancellation went on
    # and its scratch removed (other processes' sandboxes may run meanwhile)
    assert not list(Path("/dev/shm").glob(f"homeo-sandbox-{os.getpid()}-*"))


def _running(cmdline: bytes) -> bool:
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if path.read_bytes() == cmdline:
                return True
        except OSError:  # the process ended while we looked
            continue
    return False
