"""Agents for the crash tests, imported by worker subprocesses (PYTHONPATH).

The scripted model asks for LINES tool calls, one per turn, then answers. Its
choice depends only on the messages, so a run resumed in a new process picks
up exactly where the checkpoint says.

CRASHKIT_PLAN names a folder of kill points: a file `<token>@<point>` there
makes the process SIGKILL itself when it reaches that point for that run, once
(the file is removed first, so a restarted worker goes on). Points:
    model:K        when the model is asked for turn K (K tool results so far)
    before:K       inside the tool, before writing line K
    after:K        inside the tool, after writing line K, before returning
A file `<token>@hold:<K>:<pid>` there makes process <pid> wait inside the tool
for line K until the file is removed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import tool_call
from homeo.tools.registry import tool

LINES = 3


def _maybe_die(token: str, point: str) -> None:
    plan = os.environ.get("CRASHKIT_PLAN")
    if not plan:
        return
    marker = Path(plan) / f"{token}@{point}"
    try:
        marker.unlink()
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _token(messages: list[Message]) -> str:
    return next(m.content for m in messages if m.role == "user")


def writer_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    token = _token(messages)
    done = sum(1 for m in messages if m.role == "tool")
    _maybe_die(token, f"model:{done}")
    if done < LINES:
        return tool_call(tools[0].name, token=token, number=done + 1)
    return f"wrote {LINES} lines for {token}"


def _log_execution(token: str, number: int) -> None:
    with open(os.environ["CRASHKIT_EXECUTIONS"], "a") as handle:
        handle.write(f"{token}:{number} {os.getpid()}\n")
    time.sleep(float(os.environ.get("CRASHKIT_SLEEP", "0")))  # widen the window for kills
    if plan := os.environ.get("CRASHKIT_PLAN"):
        hold = Path(plan) / f"{token}@hold:{number}:{os.getpid()}"
        while hold.exists():
            time.sleep(0.02)


@tool(timeout_seconds=10)
def append_line(token: str, number: int) -> str:
    """Append one line to a shared file: a side effect that must never repeat.

    Args:
        token: the run's token
        number: which line
    """
    _log_execution(token, number)
    _maybe_die(token, f"before:{number}")
    with open(os.environ["CRASHKIT_FILE"], "a") as handle:
        handle.write(f"{token}:{number}\n")
        handle.flush()
        os.fsync(handle.fileno())
    _maybe_die(token, f"after:{number}")
    return f"line {number} written"


@tool(idempotent=True, timeout_seconds=10)
def mark_line(token: str, number: int) -> str:
    """Create the mark file for line `number`: doing it twice leaves one mark.

    Args:
        token: the run's token
        number: which line
    """
    _log_execution(token, number)
    _maybe_die(token, f"before:{number}")
    (Path(os.environ["CRASHKIT_MARKS"]) / f"{token}:{number}").write_text("1")
    _maybe_die(token, f"after:{number}")
    return f"line {number} marked"


def boss_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """Hands its token to the `writer` agent as `<token>.child` (a child run, whose
    own kill points use that token), then reports the child's answer."""
    token = _token(messages)
    results = [m for m in messages if m.role == "tool"]
    _maybe_die(token, f"model:{len(results)}")
    if not results:
        return tool_call("writer", task=f"{token}.child")
    return f"boss got: {results[-1].content}"
