"""A supervisor routing between two agents, each hand-off a child run, on SQLite
and PostgreSQL: the supervisor waits without a job while a child works."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine.agents import AgentError, AgentSpec, build_agent
from homeo.engine.submit import submit_run
from homeo.engine.supervisor import FINISH
from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel
from homeo.runtime import Runtime
from homeo.store.models import NewRun, Run

TENANT = "default"


def researcher(messages: list[Message], tools: list[ToolSpec]) -> str:
    return f"facts about {messages[-1].content}"


def writer(messages: list[Message], tools: list[ToolSpec]) -> str:
    return f"essay from {messages[-1].content}"


def boss(messages: list[Message], tools: list[ToolSpec]) -> str:
    """Research, then writing with the research, then FINISH."""
    results = [m.content for m in messages if m.role == "tool"]
    if not results:
        return json.dumps({"agent": "researcher", "task": "owls"})
    if len(results) == 1:
        return json.dumps({"agent": "writer", "task": results[0]})
    return json.dumps({"agent": FINISH, "task": "all done"})


@pytest.fixture
def runtime(tmp_path: Path, backend_url: str) -> Iterator[Runtime]:
    settings = Settings(data_dir=tmp_path, database_url=backend_url, lease_seconds=5,
                        poll_seconds=0.01, retry_base_seconds=0.0, retry_max_seconds=0.0)
    opened = Runtime.open(settings)
    yield opened
    asyncio.run(opened.aclose())


def publish(runtime: Runtime, **supervisor: object) -> ScriptedModel:
    chief = ScriptedModel(boss)
    runtime.models.add("test:boss", chief)
    runtime.models.add("test:researcher", ScriptedModel(researcher))
    runtime.models.add("test:writer", ScriptedModel(writer))
    runtime.agents.publish(TENANT, {
        "chief": AgentSpec(name="chief", model="test:boss", pattern="supervisor",
                           agents=["researcher", "writer"], supervisor=supervisor),
        "researcher": AgentSpec(name="researcher", model="test:researcher",
                                description="Finds facts."),
        "writer": AgentSpec(name="writer", model="test:writer", description="Writes."),
    })
    return chief


def get(runtime: Runtime, run_id: str) -> Run:
    run = runtime.backends.store.get_run(TENANT, run_id)
    assert run is not None
    return run


def test_the_supervisor_routes_each_task_to_a_child_run_until_finish(
    runtime: Runtime,
) -> None:
    chief = publish(runtime)
    parent, _ = submit_run(runtime.backends, NewRun(tenant_id=TENANT, agent="chief",
                                                    input="an essay on owls"))
    worker = runtime.worker(1)
    # The supervisor's first step hands the task to the researcher and waits.
    asyncio.run(worker.process(runtime.backends.queue.claim("w", 5)))
    waiting = get(runtime, parent.id)
    assert waiting.status == "waiting" and waiting.waiting_for["kind"] == "children"
    (first,) = runtime.backends.store.child_runs(TENANT, parent.id)
    assert (first.agent, first.input) == ("researcher", "owls")

    asyncio.run(worker.run_until_idle())

    done = get(runtime, parent.id)
    assert (done.status, done.output) == ("succeeded", "essay from facts about owls")
    children = runtime.backends.store.child_runs(TENANT, parent.id)
    assert sorted((c.agent, c.status, c.output) for c in children) == [
        ("researcher", "succeeded", "facts about owls"),
        ("writer", "succeeded", "essay from facts about owls")]
    steps = runtime.backends.store.list_steps(TENANT, parent.id)
    assert [(s.kind, s.name) for s in steps] == [
        ("route", "route"), ("tool", "researcher"), ("tool", "researcher"),
        ("route", "route"), ("tool", "writer"), ("tool", "writer"), ("route", "route")]
    assert steps[0].output == {"agent": "researcher", "task": "owls"}
    assert steps[2].output == {"result": "facts about owls"}
    assert steps[-1].output == {"agent": FINISH, "task": "all done"}
    # Each routing step asked for a route among the two agents, by JSON schema.
    enum = chief.schemas[0]["properties"]["agent"]["enum"]
    assert enum == ["researcher", "writer", FINISH]
    assert "- researcher: Finds facts." in chief.requests[0][-1].content


def test_a_child_run_works_for_the_user_its_parent_works_for(runtime: Runtime) -> None:
    publish(runtime)
    parent, _ = submit_run(runtime.backends, NewRun(tenant_id=TENANT, agent="chief",
                                                    input="an essay on owls", user_id="alice"))
    asyncio.run(runtime.worker(1).run_until_idle())
    children = runtime.backends.store.child_runs(TENANT, parent.id)
    assert len(children) == 2 and {child.user_id for child in children} == {"alice"}


def test_the_answer_may_be_the_supervisor_s_summary(runtime: Runtime) -> None:
    publish(runtime, answer="summary")
    parent, _ = submit_run(runtime.backends, NewRun(tenant_id=TENANT, agent="chief",
                                                    input="an essay on owls"))
    asyncio.run(runtime.worker(1).run_until_idle())
    assert get(runtime, parent.id).output == "all done"


def test_max_rounds_stops_a_supervisor_that_never_finishes(runtime: Runtime) -> None:
    publish(runtime, max_rounds=1)
    parent, _ = submit_run(runtime.backends, NewRun(tenant_id=TENANT, agent="chief",
                                                    input="an essay on owls"))
    asyncio.run(runtime.worker(1).run_until_idle())
    run = get(runtime, parent.id)
    assert run.status == "failed"
    assert "handed out 1 tasks (supervisor.max_rounds)" in run.error


def test_a_supervisor_needs_agents_and_no_tools_of_its_own() -> None:
    spec = AgentSpec(name="chief", pattern="supervisor",
                     tools=["homeo.examples.tools:calculate"], agents=["writer"])
    with pytest.raises(AgentError, match="pattern: supervisor routes between agents"):
        build_agent(spec, ScriptedModel([]))


def test_a_repeated_hand_off_ends_the_run_with_the_last_result(runtime: Runtime) -> None:
    def looping(messages: list[Message], tools: list[ToolSpec]) -> str:
        return json.dumps({"agent": "researcher", "task": "owls"})

    publish(runtime)
    runtime.models.add("test:boss", ScriptedModel(looping))
    parent, _ = submit_run(runtime.backends, NewRun(tenant_id=TENANT, agent="chief",
                                                    input="owls"))
    asyncio.run(runtime.worker(1).run_until_idle())

    run = get(runtime, parent.id)
    assert (run.status, run.output) == ("succeeded", "facts about owls")
    assert len(runtime.backends.store.child_runs(TENANT, parent.id)) == 1
    steps = runtime.backends.store.list_steps(TENANT, parent.id)
    assert [s.kind for s in steps] == ["route", "tool", "tool", "route"]
    assert steps[-1].output == {"agent": "researcher", "task": "owls", "repeated": True}
