"""Built-in tools that run code: `python` and `shell`, both in the sandbox.

Both go through `homeo.sandbox.run()`, the same path as `homeo sandbox run`, with
the operator's limits (HOMEO_SANDBOX_*). Agents list them as
`homeo.tools.builtin:python` and `homeo.tools.builtin:shell`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeo.config import load_settings
from homeo.sandbox import SandboxResult, run
from homeo.sandbox.bwrap import python_executable
from homeo.sandbox.layers import parse_allow_without
from homeo.sandbox.limits import limits_from_settings
from homeo.tools.registry import tool

# The sandbox's own wall-clock limit (HOMEO_SANDBOX_TIMEOUT) ends a run; this
# is only the engine's outer bound.
TOOL_TIMEOUT_SECONDS = 600.0


def _sandboxed(command: Sequence[str], files: dict[str, str] | None) -> dict[str, Any]:
    settings = load_settings()
    result = run(command, limits_from_settings(settings), files=files,
                 allow_without=parse_allow_without(settings.sandbox_allow_without))
    return _report(result)


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return f"<{len(data)} bytes of binary data>"


def _report(result: SandboxResult) -> dict[str, Any]:
    """What the model sees: output, status, limits hit, and the files written."""
    return {
        "exit_code": result.exit_code,
        "stdout": result.stdout.decode(errors="replace"),
        "stderr": result.stderr.decode(errors="replace"),
        "timed_out": result.timed_out,
        "out_of_memory": result.oom_killed,
        "output_truncated": result.stdout_truncated or result.stderr_truncated,
        "files": {name: _text(data) for name, data in result.files.items()},
    }


@tool(timeout_seconds=TOOL_TIMEOUT_SECONDS)
def python(code: str, files: dict[str, str] | None = None) -> dict[str, Any]:
    """Run Python code (standard library only) in a sandbox with no network.

    The working directory /scratch is writable; files written there are returned.

    Args:
        code: the Python program to run; print what you want to see
        files: text files to put in /scratch first, by relative path
    """
    return _sandboxed([python_executable(), "-I", "-c", code], files)


@tool(timeout_seconds=TOOL_TIMEOUT_SECONDS)
def shell(command: str, files: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a shell command (POSIX sh) in a sandbox with no network.

    The working directory /scratch is writable; files written there are returned.

    Args:
        command: the command line to run
        files: text files to put in /scratch first, by relative path
    """
    return _sandboxed(["/bin/sh", "-c", command], files)
