"""The run loop on a real SQLite store with the scripted model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from homeo.backends import Backends, open_backends
from homeo.engine.errors import RetryableError, RunCancelled, RunFailed, RunInterrupted
from homeo.engine.graph import END, BranchNode, Graph, Node, Outcome, RunState, RunContext
from homeo.engine.react import tool_calling_graph
from homeo.engine.runner import execute
from homeo.llm.base import Message, ModelError, ModelResponse, ToolSpec, Usage
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.store.models import NewRun, Run
from homeo.tools.registry import from_function, tool

CALLS: list[tuple[float, float]] = []


@tool(idempotent=True)
def add(a: float, b: float) -> float:
    """Add two numbers.

    Args:
        a: first
        b: second
    """
    CALLS.append((a, b))
    return a + b


@tool(timeout_seconds=0.2)
async def slow() -> str:
    """Takes too long."""
    await asyncio.sleep(5)
    return "never"


def explode() -> str:
    """Always fails."""
    raise RuntimeError("disk on fire")


@pytest.fixture
def backends(tmp_path: Path):
    opened = open_backends(f"sqlite:///{tmp_path / 'engine.db'}")
    yield opened
    opened.close()


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def new_run(backends: Backends, text: str = "add 2 and 3") -> Run:
    run, _ = backends.store.create_run(NewRun(tenant_id="t", agent="calc", input=text))
    return backends.store.transition_run("t", run.id, "running", allowed_from={"queued"})


def reload(backends: Backends, run: Run) -> Run:
    return backends.store.get_run("t", run.id)


def graph(model, *tools_, max_steps: int = 5, max_tool_errors: int = 3) -> Graph:
    chosen = [from_function(f) for f in (tools_ or (add,))]
    return tool_calling_graph(model, chosen, max_steps=max_steps, max_tool_errors=max_tool_errors)


def test_tool_loop_checkpoints_every_step(backends: Backends) -> None:
    model = ScriptedModel([
        ModelResponse(message=tool_call("add", a=2, b=3), usage=Usage(input_tokens=7,
                                                                     output_tokens=2)),
        ModelResponse(message=Message(role="assistant", content="5"), usage=Usage(output_tokens=1)),
    ])
    run = new_run(backends)
    events: list[dict[str, Any]] = []
    output = asyncio.run(execute(backends.store, run, graph(model), system_prompt="be exact",
                                 emit=events.append))
    assert output == "5"
    steps = backends.store.list_steps("t", run.id)
    assert [(s.kind, s.name, s.status) for s in steps] == [
        ("model", "model", "succeeded"), ("tool", "add", "succeeded"),
        ("model", "model", "succeeded"),
    ]
    assert steps[1].input["arguments"] == {"a": 2, "b": 3} and steps[1].output == {"result": 5.0}
    stored = reload(backends, run)
    assert (stored.input_tokens, stored.output_tokens) == (7, 3)
    assert stored.checkpoint["next"] == END and stored.checkpoint["seq"] == 3
    assert model.requests[0][0] == Message(role="system", content="be exact")
    tool_message = model.requests[1][-1]
    assert tool_message.role == "tool" and tool_message.content == "5.0"
    assert [e["type"] for e in events].count("step_succeeded") == 3


def test_resume_continues_at_the_checkpoint(backends: Backends) -> None:
    turns: list[int] = []

    def decide(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
        done = sum(m.role == "tool" for m in messages)
        turns.append(done)
        return tool_call("add", a=done, b=1) if done < 2 else "finished"

    run = new_run(backends)
    completed = 0

    def stop_after_three() -> bool:
        nonlocal completed
        completed += 1
        return completed > 3

    with pytest.raises(RunInterrupted):
        asyncio.run(execute(backends.store, run, graph(ScriptedModel(decide)),
                            stopping=stop_after_three))
    assert turns == [0, 1] and CALLS == [(0, 1)]
    output = asyncio.run(execute(backends.store, reload(backends, run), graph(ScriptedModel(decide))))
    assert output == "finished"
    assert turns == [0, 1, 2] and CALLS == [(0, 1), (1, 1)]  # nothing ran twice
    assert all(s.attempts == 1 for s in backends.store.list_steps("t", run.id))


def test_model_errors_bad_calls_go_back_to_the_model(backends: Backends) -> None:
    model = ScriptedModel([
        tool_call("nope", x=1),
        tool_call("add", a="two", b=3),
        tool_call("explode"),
        tool_call("slow"),
        "gave up politely",
    ])
    run = new_run(backends)
    agent = graph(model, add, explode, slow, max_steps=6, max_tool_errors=4)
    assert asyncio.run(execute(backends.store, run, agent)) == "gave up politely"
    errors = [s.output["error"] for s in backends.store.list_steps("t", run.id) if s.kind == "tool"]
    assert "tool 'nope' is not available to this agent (allowed: add, explode, slow)" in errors[0]
    assert "invalid arguments for tool 'add': a: Input should be a valid number" in errors[1]
    assert "raised RuntimeError: disk on fire" in errors[2]
    assert "timed out after 0.2s" in errors[3]
    assert model.requests[1][-1].content.startswith("error: tool 'nope'")


def test_too_many_tool_errors_fail_the_run(backends: Backends) -> None:
    model = ScriptedModel([tool_call("nope"), tool_call("nope"), tool_call("nope")])
    run = new_run(backends)
    with pytest.raises(RunFailed, match="max_tool_errors=1"):
        asyncio.run(execute(backends.store, run, graph(model, max_tool_errors=1)))
    assert backends.store.list_steps("t", run.id)[-1].status == "failed"


def test_max_steps_and_last_turn_without_tools(backends: Backends) -> None:
    offered: list[int] = []

    def always_call(messages: list[Message], tools: list[ToolSpec]) -> Message:
        offered.append(len(tools))
        return tool_call("add", a=1, b=1)

    run = new_run(backends)
    with pytest.raises(RunFailed, match="all 3 model turns"):
        asyncio.run(execute(backends.store, run, graph(ScriptedModel(always_call), max_steps=3)))
    assert offered == [1, 1, 0]


def test_model_errors_map_to_retry_or_failure(backends: Backends) -> None:
    def outage(messages, tools):
        raise ModelError("503 from provider", retryable=True)

    run = new_run(backends)
    with pytest.raises(RetryableError, match="503"):
        asyncio.run(execute(backends.store, run, graph(ScriptedModel(outage))))
    step = backends.store.list_steps("t", run.id)[0]
    assert step.status == "failed" and "503" in step.error
    # The retry resumes at the same (idempotent) model step: attempt 2.
    output = asyncio.run(execute(backends.store, reload(backends, run),
                                 graph(ScriptedModel(["recovered"]))))
    assert output == "recovered"
    assert backends.store.list_steps("t", run.id)[0].attempts == 2

    def refusal(messages, tools):
        raise ModelError("400 content policy", retryable=False)

    other = new_run(backends)
    with pytest.raises(RunFailed, match="content policy"):
        asyncio.run(execute(backends.store, other, graph(ScriptedModel(refusal))))


def test_cancel_stops_between_steps(backends: Backends) -> None:
    run = new_run(backends)

    def cancel_then_call(messages, tools):
        backends.store.transition_run("t", run.id, "cancelled", allowed_from={"running"})
        return tool_call("add", a=1, b=2)

    with pytest.raises(RunCancelled):
        asyncio.run(execute(backends.store, run, graph(ScriptedModel(cancel_then_call))))
    assert CALLS == []  # the tool step after the cancel never started
    assert [s.kind for s in backends.store.list_steps("t", run.id)] == ["model"]


class Shout(Node):
    kind = "transform"

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        new = state.model_copy(deep=True)
        new.output = state.messages[-1].content.upper()
        return Outcome(output=new.output, state=new, next=END)


class Whisper(Node):
    kind = "transform"

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        new = state.model_copy(deep=True)
        new.output = state.messages[-1].content.lower()
        return Outcome(output=new.output, state=new, next=END)


def test_branch_nodes_route_custom_graphs(backends: Backends) -> None:
    routed = Graph(
        nodes={
            "route": BranchNode("route", lambda s: "shout" if "!" in s.messages[-1].content
                                else "whisper"),
            "shout": Shout("shout"),
            "whisper": Whisper("whisper"),
        },
        start="route",
    )
    loud = new_run(backends, "Hello!")
    quiet = new_run(backends, "Hello")
    assert asyncio.run(execute(backends.store, loud, routed)) == "HELLO!"
    assert asyncio.run(execute(backends.store, quiet, routed)) == "hello"
    steps = backends.store.list_steps("t", loud.id)
    assert [(s.kind, s.output) for s in steps] == [("branch", {"next": "shout"}),
                                                    ("transform", "HELLO!")]
