"""Plan and execute: a plan step, each item through the tool-calling loop, re-plans.

Real SQLite store, the scripted model, a real tool.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from homeo.backends import Backends, open_backends
from homeo.engine.agents import AgentError, AgentSpec, build_agent
from homeo.engine.plan import FINISH_REQUEST, PLAN_REQUEST, PlanPolicy, plan_execute_graph
from homeo.engine.reflect import ReflectPolicy
from homeo.engine.runner import execute
from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.store.models import NewRun, Run
from homeo.tools.permissions import ToolGate
from homeo.tools.registry import from_function, tool

CALLS: list[tuple[int, int]] = []


@tool(idempotent=True)
def add(a: int, b: int) -> int:
    """Add two whole numbers (not negative ones).

    Args:
        a: first
        b: second
    """
    CALLS.append((a, b))
    if a < 0 or b < 0:
        raise ValueError("negative numbers are not supported")
    return a + b


@pytest.fixture
def backends(tmp_path: Path):
    opened = open_backends(f"sqlite:///{tmp_path / 'engine.db'}")
    yield opened
    CALLS.clear()
    opened.close()


def planner(first: list[str], revised: list[str]):
    """Plans `first`; re-plans `revised`; does each "add A and B" item with the tool."""
    def reply(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
        last = messages[-1]
        if last.content == PLAN_REQUEST:
            return json.dumps({"items": [{"goal": goal} for goal in first]})
        if "Revise the steps" in last.content:
            return json.dumps({"items": [{"goal": goal} for goal in revised]})
        if last.role == "tool":
            return f"got {last.content}"
        if last.content.startswith("Every step of the plan is done"):
            return "; ".join(m.content for m in messages if m.content.startswith("got "))
        numbers = re.search(r"add (-?\d+) and (-?\d+)", last.content)
        return tool_call("add", a=int(numbers[1]), b=int(numbers[2])) if numbers else "noted"
    return reply


def run_plan(backends: Backends, model: ScriptedModel, policy: PlanPolicy) -> tuple[Run, list]:
    graph = plan_execute_graph(model, [from_function(add)], policy=policy, max_steps=8)
    run, _ = backends.store.create_run(NewRun(tenant_id="t", agent="p", input="sum things"))
    run = backends.store.transition_run("t", run.id, "running", allowed_from={"queued"})
    asyncio.run(execute(backends.store, run, graph))
    return backends.store.get_run("t", run.id), backends.store.list_steps("t", run.id)


def test_each_item_runs_as_its_own_steps_and_a_failed_item_is_replanned(
    backends: Backends,
) -> None:
    model = ScriptedModel(planner(["add 2 and 3", "add -1 and 1", "add 7 and 7"],
                                  ["add 1 and 1"]))

    run, steps = run_plan(backends, model, PlanPolicy())

    assert [(s.kind, s.name) for s in steps] == [
        ("plan", "plan"),
        ("branch", "item"), ("model", "model"), ("tool", "add"), ("model", "model"),
        ("branch", "check"),
        ("branch", "item"), ("model", "model"), ("tool", "add"), ("model", "model"),
        ("branch", "check"), ("plan", "replan"),
        ("branch", "item"), ("model", "model"), ("tool", "add"), ("model", "model"),
        ("branch", "check"),
        ("branch", "item"), ("model", "answer")]
    assert CALLS == [(2, 3), (-1, 1), (1, 1)]  # the revised plan dropped "add 7 and 7"
    assert run.checkpoint["state"]["output"] == "got 5; got error: tool 'add' raised" \
        " ValueError: negative numbers are not supported; got 2"
    assert steps[0].output == {"plan": ["add 2 and 3", "add -1 and 1", "add 7 and 7"]}
    assert steps[5].output["status"] == "done" and steps[5].output["result"] == "got 5"
    assert steps[10].output["status"] == "failed" and steps[10].output["next"] == "replan"
    assert steps[11].output == {"revision": 1, "after_item": 1, "reason": "failed",
                                "items": ["add 1 and 1"]}
    plan = run.checkpoint["state"]["data"]["plan"]
    assert [(item["goal"], item["status"]) for item in plan["items"]] == [
        ("add 2 and 3", "done"), ("add -1 and 1", "failed"), ("add 1 and 1", "done")]
    assert plan["revisions"] == [{"after_item": 1, "reason": "failed", "items": ["add 1 and 1"]}]
    # The plan and re-plan steps asked for the plan's JSON schema.
    schemas = [schema for schema in model.schemas if schema is not None]
    assert [s["properties"]["items"]["minItems"] for s in schemas] == [1, 0]
    assert model.requests[-1][-1].content == FINISH_REQUEST.format(task="sum things")


def test_after_each_replans_after_every_item_that_leaves_work(backends: Backends) -> None:
    model = ScriptedModel(planner(["add 1 and 2", "add 3 and 4"], ["add 5 and 6"]))

    run, steps = run_plan(backends, model, PlanPolicy(replan="after_each", max_replans=1))

    assert [s.name for s in steps].count("replan") == 1  # max_replans
    assert CALLS == [(1, 2), (5, 6)]
    assert run.checkpoint["state"]["output"] == "got 3; got 11"


def test_the_pattern_is_chosen_in_the_agent_spec(backends: Backends) -> None:
    spec = AgentSpec(name="p", tools=["homeo.examples.tools:calculate"],
                     pattern="plan_execute", plan=PlanPolicy(max_items=2))
    agent = build_agent(spec, ScriptedModel([]), ToolGate())
    assert agent.graph.start == "plan" and "replan" in agent.graph.nodes

    with pytest.raises(AgentError, match="reflect: works with pattern: tool_calling only"):
        build_agent(spec.model_copy(update={"reflect": ReflectPolicy()}), ScriptedModel([]))
