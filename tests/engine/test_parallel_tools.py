"""A model turn with several tool calls: each call its own durable step, run at
once when every call is idempotent and cannot wait.

Real SQLite store, the scripted model, real tools. The two `meet_*` tools each
wait for the other to start: run one after the other they would time out.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from homeo.backends import Backends, open_backends
from homeo.engine.react import tool_calling_graph
from homeo.engine.runner import execute
from homeo.llm.base import Message, ToolCall
from homeo.llm.providers.scripted import ScriptedModel
from homeo.store.models import NewRun, Run
from homeo.tools.registry import from_function, tool

CALLS: list[str] = []
STARTED: dict[str, asyncio.Event] = {}


def _event(name: str) -> asyncio.Event:
    return STARTED.setdefault(name, asyncio.Event())


async def _meet(me: str, other: str) -> str:
    CALLS.append(me)
    _event(me).set()
    await asyncio.wait_for(_event(other).wait(), timeout=30)
    return f"{me} met {other}"


@tool(idempotent=True, timeout_seconds=60)
async def meet_left(note: str) -> str:
    """Waits until meet_right has started.

    Args:
        note: anything
    """
    return await _meet("left", "right")


@tool(idempotent=True, timeout_seconds=60)
async def meet_right(note: str) -> str:
    """Waits until meet_left has started.

    Args:
        note: anything
    """
    return await _meet("right", "left")


@tool(idempotent=True)
def lookup(key: str) -> str:
    """Look a key up.

    Args:
        key: the key
    """
    CALLS.append(f"lookup {key}")
    return key.upper()


@tool
def send(text: str) -> str:
    """Send a message (a side effect: not idempotent).

    Args:
        text: what to send
    """
    CALLS.append(f"send {text}")
    return f"sent {text}"


class WorkerKilled(BaseException):
    """Stands for the worker's process dying at the point it is raised."""


@pytest.fixture
def backends(tmp_path: Path):
    opened = open_backends(f"sqlite:///{tmp_path / 'engine.db'}")
    yield opened
    opened.close()


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()
    STARTED.clear()


def new_run(backends: Backends) -> Run:
    run, _ = backends.store.create_run(NewRun(tenant_id="t", agent="a", input="go"))
    return backends.store.transition_run("t", run.id, "running", allowed_from={"queued"})


def turn(*calls: tuple[str, dict[str, Any]]) -> Message:
    return Message(role="assistant", tool_calls=[
        ToolCall(id=f"call_{index}", name=name, arguments=arguments)
        for index, (name, arguments) in enumerate(calls)])


def graph(model: ScriptedModel, *functions):
    return tool_calling_graph(model, [from_function(f) for f in functions], max_steps=4)


def test_idempotent_calls_of_one_turn_run_at_once_each_as_its_own_step(
    backends: Backends,
) -> None:
    model = ScriptedModel([turn(("meet_left", {"note": "a"}), ("meet_right", {"note": "b"})),
                           "both met"])
    run = new_run(backends)

    output = asyncio.run(execute(backends.store, run, graph(model, meet_left, meet_right)))

    assert output == "both met"
    steps = backends.store.list_steps("t", run.id)
    assert [(s.seq, s.kind, s.name, s.status, s.attempts) for s in steps] == [
        (0, "model", "model", "succeeded", 1), (1, "tool", "meet_left", "succeeded", 1),
        (2, "tool", "meet_right", "succeeded", 1), (3, "model", "model", "succeeded", 1)]
    assert steps[1].output == {"result": "left met right"}
    assert steps[2].input["arguments"] == {"note": "b"}
    # The next model turn sees every result, in the order of the calls.
    results = [(m.tool_call_id, m.content) for m in model.requests[1] if m.role == "tool"]
    assert results == [("call_0", "left met right"), ("call_1", "right met left")]
    assert backends.store.get_run("t", run.id).checkpoint["seq"] == 4


def test_a_crash_between_two_completed_calls_never_repeats_them(backends: Backends) -> None:
    model = ScriptedModel([turn(("lookup", {"key": "a"}), ("lookup", {"key": "b"}),
                                ("lookup", {"key": "c"}))])
    run = new_run(backends)

    def die_after_the_first_tool_step(event: dict[str, Any]) -> None:
        if event["type"] == "step_succeeded" and event["kind"] == "tool":
            raise WorkerKilled

    with pytest.raises(WorkerKilled):
        asyncio.run(execute(backends.store, run, graph(model, lookup),
                            emit=die_after_the_first_tool_step))
    assert sorted(CALLS) == ["lookup a", "lookup b", "lookup c"]  # all three ran at once
    steps = backends.store.list_steps("t", run.id)
    assert [(s.name, s.status) for s in steps] == [
        ("model", "succeeded"), ("lookup", "succeeded"), ("lookup", "running"),
        ("lookup", "running")]
    stored = backends.store.get_run("t", run.id)
    assert stored.checkpoint["seq"] == 2 and stored.checkpoint["next"] == "tools"

    CALLS.clear()
    resumed = ScriptedModel(["A, B and C"])
    output = asyncio.run(execute(backends.store, stored, graph(resumed, lookup)))

    assert output == "A, B and C"
    assert sorted(CALLS) == ["lookup b", "lookup c"]  # the completed call did not run again
    steps = backends.store.list_steps("t", run.id)
    assert [(s.name, s.status, s.attempts) for s in steps] == [
        ("model", "succeeded", 1), ("lookup", "succeeded", 1), ("lookup", "succeeded", 2),
        ("lookup", "succeeded", 2), ("model", "succeeded", 1)]
    assert [m.content for m in resumed.requests[0] if m.role == "tool"] == ["A", "B", "C"]


def test_a_turn_with_a_side_effect_runs_its_calls_one_after_the_other(
    backends: Backends,
) -> None:
    model = ScriptedModel([turn(("lookup", {"key": "a"}), ("send", {"text": "hi"})),
                           "done"])
    run = new_run(backends)
    events: list[dict[str, Any]] = []

    asyncio.run(execute(backends.store, run, graph(model, lookup, send), emit=events.append))

    # One step ends before the next begins: no batch when a call is not idempotent.
    order = [(e["type"], e["seq"]) for e in events if e["type"] in ("step_started",
                                                                    "step_succeeded")]
    assert order == [("step_started", 0), ("step_succeeded", 0), ("step_started", 1),
                     ("step_succeeded", 1), ("step_started", 2), ("step_succeeded", 2),
                     ("step_started", 3), ("step_succeeded", 3)]
    assert CALLS == ["lookup a", "send hi"]


def test_a_failed_call_in_a_batch_goes_back_to_the_model_with_the_others(
    backends: Backends,
) -> None:
    model = ScriptedModel([turn(("lookup", {"key": "a"}), ("lookup", {"wrong": 1})), "ok"])
    run = new_run(backends)

    asyncio.run(execute(backends.store, run, graph(model, lookup)))

    tool_messages = [m for m in model.requests[1] if m.role == "tool"]
    assert [(m.content[:6], m.is_error) for m in tool_messages] == [
        ("A", False), ("error:", True)]
    steps = backends.store.list_steps("t", run.id)
    assert "error" in steps[2].output and steps[2].status == "succeeded"
