"""The tool-calling loop's answers: repeated calls, and where the output comes from.

Real SQLite store, the scripted model, real tools.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from homeo.backends import Backends, open_backends
from homeo.engine.agents import AgentError, AgentSpec, build_agent
from homeo.engine.answer import FinalAnswer
from homeo.engine.react import ANSWER_NOW, tool_calling_graph
from homeo.engine.runner import execute
from homeo.llm.base import Message, ToolCall, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.store.models import NewRun, Run
from homeo.tools.permissions import ToolGate
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
    if a < 0:
        raise ValueError("negative numbers are not supported")
    return a + b


@pytest.fixture
def backends(tmp_path: Path):
    opened = open_backends(f"sqlite:///{tmp_path / 'engine.db'}")
    yield opened
    opened.close()


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def start(backends: Backends, text: str = "add 2 and 3") -> Run:
    run, _ = backends.store.create_run(NewRun(tenant_id="t", agent="calc", input=text))
    return backends.store.transition_run("t", run.id, "running", allowed_from={"queued"})


def run_graph(backends: Backends, model: ScriptedModel, answer: FinalAnswer | None = None,
              max_steps: int = 5) -> tuple[str, Run]:
    run = start(backends)
    graph = tool_calling_graph(model, [from_function(add)], max_steps=max_steps, answer=answer)
    output = asyncio.run(execute(backends.store, run, graph))
    return output, run


def same_id_call(a: float, b: float) -> Message:
    """A call whose id is the same every turn, as some servers send them."""
    return Message(role="assistant",
                   tool_calls=[ToolCall(id="call_0", name="add", arguments={"a": a, "b": b})])


def test_a_repeated_call_is_answered_from_its_record_and_the_model_must_answer(
    backends: Backends,
) -> None:
    offered: list[list[str]] = []

    def repeat_once(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
        offered.append([t.name for t in tools])
        if sum(m.role == "tool" for m in messages) < 2:
            return tool_call("add", a=17, b=23)
        return "It is 40."

    model = ScriptedModel(repeat_once)
    output, run = run_graph(backends, model)

    assert output == "It is 40."
    assert CALLS == [(17, 23)]  # the repeat did not run the tool
    steps = backends.store.list_steps("t", run.id)
    assert [(s.name, s.output.get("result"), s.output.get("repeated")) for s in steps
            if s.kind == "tool"] == [("add", 40.0, None), ("add", "40.0", True)]
    assert offered == [["add"], ["add"], []]  # the turn after the repeat has no tools
    assert model.requests[2][-1] == Message(role="user", content=ANSWER_NOW)
    assert model.requests[2][-2].content == "40.0"
    assert steps[-1].input["answer_now"] is True


def test_a_call_that_failed_is_made_again_when_repeated(backends: Backends) -> None:
    model = ScriptedModel([tool_call("add", a=-1, b=1), tool_call("add", a=-1, b=1), "gave up"])

    output, _ = run_graph(backends, model)

    assert output == "gave up"
    assert CALLS == [(-1, 1), (-1, 1)]


def test_a_reused_call_id_is_not_taken_for_a_repeat(backends: Backends) -> None:
    model = ScriptedModel([same_id_call(1, 2), same_id_call(3, 4), "done"])

    output, _ = run_graph(backends, model)

    assert output == "done"
    assert CALLS == [(1, 2), (3, 4)]


def test_tool_result_answers_with_the_template_without_another_model_turn(
    backends: Backends,
) -> None:
    model = ScriptedModel([tool_call("add", a=17, b=23)])

    output, run = run_graph(backends, model, FinalAnswer("tool_result", "{a} + {b} = {result}"))

    assert output == "17 + 23 = 40.0"
    assert [s.kind for s in backends.store.list_steps("t", run.id)] == ["model", "tool"]
    assert len(model.requests) == 1


def test_tool_result_lets_the_model_fix_a_failed_call_first(backends: Backends) -> None:
    model = ScriptedModel([tool_call("add", a=-2, b=3), tool_call("add", a=2, b=3)])

    output, _ = run_graph(backends, model, FinalAnswer("tool_result", "{result}"))

    assert output == "5.0"
    assert CALLS == [(-2, 3), (2, 3)]


def test_tool_result_without_any_tool_call_is_the_models_answer(backends: Backends) -> None:
    output, _ = run_graph(backends, ScriptedModel(["I cannot add that."]),
                          FinalAnswer("tool_result", "{result}"))

    assert output == "I cannot add that."


@pytest.mark.parametrize(
    ("prose", "output"),
    [("2 and 3 make 5.0.", "2 and 3 make 5.0."),
     ("The original code returns 391.", "2 + 3 = 5.0")],
)
def test_quote_result_keeps_prose_only_when_it_quotes_the_result(
    backends: Backends, prose: str, output: str
) -> None:
    model = ScriptedModel([tool_call("add", a=2, b=3), prose])

    answer, _ = run_graph(backends, model, FinalAnswer("quote_result", "{a} + {b} = {result}"))

    assert answer == output


def test_an_answer_template_must_name_known_fields() -> None:
    spec = AgentSpec(name="calc", tools=["homeo.examples.tools:calculate"],
                     answer="tool_result", answer_template="{expresion} = {result}")

    with pytest.raises(AgentError) as caught:
        build_agent(spec, ScriptedModel([]), ToolGate())

    assert str(caught.value) == (
        "agent 'calc': answer_template field {expresion} is not one of {expression},"
        " {result}, {tool}")


def test_an_answer_from_a_tool_needs_a_tool() -> None:
    spec = AgentSpec(name="chat", answer="quote_result")

    with pytest.raises(AgentError, match="answer: quote_result needs at least one tool"):
        build_agent(spec, ScriptedModel([]), ToolGate())
