"""Tools and scripted models for runs that wait: approvals, questions, sub-agents.

The side-effect tools append a line to the file named by WAITKIT_LOG, so a test
(or a `homeo` subprocess it starts) can count exactly how often each ran.
Models answer from the messages alone, the same in any process.
"""

from __future__ import annotations

import os
from pathlib import Path

from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import tool_call
from homeo.tools.context import ToolContext
from homeo.tools.registry import tool

LOG_ENV = "WAITKIT_LOG"


def _log(line: str) -> None:
    with Path(os.environ[LOG_ENV]).open("a") as log:
        log.write(line + "\n")


def logged(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@tool
def deploy(service: str) -> str:
    """Deploy a service to production.

    Args:
        service: the service's name
    """
    _log(f"deploy {service}")
    return f"deployed {service}"


@tool(requires_approval=True)
def wire_money(amount: int) -> str:
    """Send money out of the company account.

    Args:
        amount: in euros
    """
    _log(f"wire {amount}")
    return f"wired {amount} EUR"


@tool
def greet_person(context: ToolContext) -> str:
    """Greet the person running the agent by name (asks them for it)."""
    name = context.ask("What is your name?")
    _log(f"greet {name}")
    return f"hello {name}"


def _results(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.role == "tool"]


def _task(messages: list[Message]) -> str:
    return next(m.content for m in messages if m.role == "user")


def deployer_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """Deploys the service named in the task, then reports the tool's answer."""
    results = _results(messages)
    if not results:
        return tool_call("deploy", service=_task(messages))
    return f"done: {results[-1].content}"


def payer_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    results = _results(messages)
    if not results:
        return tool_call("wire_money", amount=int(_task(messages)))
    return f"done: {results[-1].content}"


def greeter_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    results = _results(messages)
    if not results:
        return tool_call("greet_person")
    return results[-1].content


def manager_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """Hands the task to the `deployer` agent, then passes its answer on."""
    results = _results(messages)
    if not results:
        return tool_call("deployer", task=_task(messages))
    return f"the deployer says: {results[-1].content}"
