"""Scripted agents for the API, CLI and `homeo serve` tests.

Agent YAML files name these functions as `model: scripted:scriptkit:NAME` and
`tools: [scriptkit:NAME]`, so this folder must be importable: tests prepend it
to sys.path, and subprocesses get it on PYTHONPATH (see `SUPPORT`).

Every model answers from the messages alone, so its behaviour is the same in
the test process and in a `homeo serve` subprocess.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from homeo.llm.base import Message, ModelError, ToolSpec
from homeo.llm.providers.scripted import tool_call
from homeo.tools.registry import tool

SUPPORT = Path(__file__).parent
HOLD_SECONDS = 30.0

# name -> (model function, tools), written out by `write_agents`.
AGENTS: dict[str, tuple[str, list[str]]] = {
    "echo": ("echo_model", []),
    "calc": ("calc_model", ["homeo.examples.tools:calculate"]),
    "stray": ("stray_model", ["homeo.examples.tools:calculate"]),
    "broken": ("broken_model", []),
    "holder": ("holder_model", ["scriptkit:hold"]),
}


def write_agents(folder: Path, names: list[str] | None = None) -> Path:
    """Write one YAML file per agent into `folder` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names or list(AGENTS):
        model, tools = AGENTS[name]
        (folder / f"{name}.yaml").write_text(
            f"name: {name}\n"
            f"description: scripted {name}\n"
            f"model: scripted:scriptkit:{model}\n"
            f"tools: [{', '.join(tools)}]\n"
            "max_steps: 4\n"
            "timeouts: {step: 40, run: 120}\n"
        )
    return folder


def _task(messages: list[Message]) -> str:
    return next(m.content for m in messages if m.role == "user")


def _tool_results(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.role == "tool"]


def echo_model(messages: list[Message], tools: list[ToolSpec]) -> str:
    """Answers at once, with no tool."""
    return f"echo: {_task(messages)}"


def calc_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """Calls `calculate` with the task as the expression, then states the result."""
    results = _tool_results(messages)
    if not results:
        return tool_call("calculate", expression=_task(messages))
    return f"{_task(messages)} = {results[-1].content}"


def stray_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """Calls a tool the agent does not have, then reports what came back."""
    results = _tool_results(messages)
    if not results:
        return tool_call("delete_everything", path="/")
    return f"recovered after: {results[-1].content}"


def broken_model(messages: list[Message], tools: list[ToolSpec]) -> str:
    raise ModelError("scripted refusal: this model never answers", retryable=False)


def holder_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """Calls `hold` with the task as the gate name, then answers."""
    if not _tool_results(messages):
        return tool_call("hold", gate=_task(messages))
    return f"released {_task(messages)}"


def whoami_model(messages: list[Message], tools: list[ToolSpec]) -> str:
    """Answers with the task and the id of the process that ran the step (not
    in AGENTS: tests/test_cli_eval_ray.py writes its agent)."""
    return f"{_task(messages)} from pid {os.getpid()}"


# Secrets a test plants for `reveal` to print (tests/api/test_secrets_never_leak.py
# writes the agent that calls it).
planted: list[str] = []


@tool(idempotent=True)
def reveal() -> str:
    """Print the configuration, secrets and all, as a careless tool might."""
    return "config dump: " + " ; ".join(planted)


def revealer_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """Calls `reveal`, then answers with what it read."""
    results = _tool_results(messages)
    if not results:
        return tool_call("reveal")
    return f"the tool said: {results[-1].content}"


# Gates shared by the test and an in-process server (same module object).
_gates: dict[str, threading.Event] = {}
_gates_lock = threading.Lock()


def _gate(name: str) -> threading.Event:
    with _gates_lock:
        return _gates.setdefault(name, threading.Event())


def release(name: str) -> None:
    """Let every `hold(name)` call return."""
    _gate(name).set()


@tool(idempotent=True, timeout_seconds=HOLD_SECONDS + 5)
def hold(gate: str) -> str:
    """Wait until the test releases `gate` (at most HOLD_SECONDS).

    Args:
        gate: the gate's name
    """
    opened = _gate(gate).wait(HOLD_SECONDS)
    return "released" if opened else "gave up waiting"


# Gates whose `block` call was stopped from outside (its task cancelled).
stopped: set[str] = set()


@tool(idempotent=False, timeout_seconds=HOLD_SECONDS + 5)
async def block(gate: str) -> str:
    """Wait until the test releases `gate`, noting it if the call is stopped first.

    Args:
        gate: the gate's name
    """
    event = _gate(gate)
    try:
        while not event.is_set():
            await asyncio.sleep(0.01)
    except asyncio.CancelledError:
        stopped.add(gate)
        raise
    return "released"


def peek_model(messages: list[Message], tools: list[ToolSpec]) -> str:
    """Answers with the input twice: as is, and with its angle brackets turned
    to parentheses, so the second copy shows what the model read even after
    the API has put a caller's own values back in place of placeholders."""
    text = _task(messages)
    return f"echo: {text} | read: {text.replace('<', '(').replace('>', ')')}"
