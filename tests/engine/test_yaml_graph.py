"""Agents written as graphs in YAML: refused at load when malformed; run with the
scripted model through the real worker (approval waits, sub-agents, loops)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from homeo.config import Settings
from homeo.engine.agents import AgentError, AgentSpec, load_agent_file
from homeo.engine.submit import submit_run
from homeo.engine.waits import answer
from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.runtime import Runtime
from homeo.store.models import NewRun, Run

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
import waitkit  # noqa: E402

TENANT = "default"

RELEASE = {
    "start": "draft",
    "nodes": {
        "draft": {"kind": "model", "prompt": "Write a note about {input}", "next": "review",
                  "save": "note", "max_visits": 3},
        "review": {"kind": "branch", "ask": "Is the note short?",
                   "cases": {"yes": "approve", "no": "draft"}},
        "approve": {"kind": "approval", "message": "Ship {note}?", "next": "ship",
                    "rejected": "done"},
        "ship": {"kind": "tool", "tool": "deploy", "arguments": {"service": "{input}"},
                 "next": "done"},
        "done": {"kind": "end", "output": "{note} ({output})"},
    },
}


def write(tmp_path: Path, graph: dict, **extra: object) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump({"name": "flow", "graph": graph, **extra}))
    return path


@pytest.mark.parametrize(("change", "problem"), [
    ({"draft": {"kind": "model", "next": "reveiw"}},
     "node 'draft': next: no node named 'reveiw'"),
    ({"done": {"kind": "branch", "on": "output", "cases": {"x": "draft"}}},
     "start 'draft': no node of kind end can be reached from it"),
    ({"draft": {"kind": "model", "next": "review"}},
     "node 'draft': it is in a loop (draft -> review -> draft) where no node has max_visits"),
    ({"review": {"kind": "branch", "ask": "Short?", "cases": {"yes": "approve", "no": "stuck"}},
      "stuck": {"kind": "approval", "next": "stuck", "max_visits": 2}},
     "node 'stuck': no end can be reached from it"),
])
def test_a_malformed_graph_is_refused_at_load_naming_the_file_and_node(
    tmp_path: Path, change: dict, problem: str
) -> None:
    graph = {**RELEASE, "nodes": {**RELEASE["nodes"], **change}}
    path = write(tmp_path, graph)

    with pytest.raises(AgentError) as caught:
        load_agent_file(path)

    assert str(caught.value).startswith(f"{path}: graph: {problem}")
    assert problem in str(caught.value)


def test_a_graph_is_either_a_graph_or_a_pattern(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="graph: an agent is either a graph or pattern"):
        from homeo.engine.agents import build_agent

        spec = load_agent_file(write(tmp_path, RELEASE, pattern="plan_execute"))
        build_agent(spec, ScriptedModel([]))


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "side-effects.log"
    monkeypatch.setenv(waitkit.LOG_ENV, str(path))
    return path


@pytest.fixture
def runtime(tmp_path: Path, backend_url: str) -> Iterator[Runtime]:
    settings = Settings(data_dir=tmp_path, database_url=backend_url, lease_seconds=5,
                        poll_seconds=0.01, retry_base_seconds=0.0, retry_max_seconds=0.0)
    opened = Runtime.open(settings)
    yield opened
    asyncio.run(opened.aclose())


def writer(verdicts: list[str]):
    """Drafts get shorter each time; the review answers from `verdicts`."""
    def reply(messages: list[Message], tools: list[ToolSpec]) -> str:
        if messages[-1].content.startswith("Is the note short?"):
            return json.dumps({"answer": verdicts.pop(0)})
        drafts = sum(m.content.startswith("Write a note") for m in messages)
        return "a long note" if drafts == 1 else "short note"
    return reply


def publish(runtime: Runtime, graph: dict, verdicts: list[str], **extra: object) -> None:
    runtime.models.add("test:writer", ScriptedModel(writer(verdicts)))
    runtime.models.add("test:deployer", ScriptedModel(waitkit.deployer_model))
    runtime.agents.publish(TENANT, {
        "flow": AgentSpec.model_validate({"name": "flow", "model": "test:writer",
                                          "tools": ["waitkit:deploy"], "graph": graph,
                                          **extra}),
        "deployer": AgentSpec(name="deployer", model="test:deployer",
                              tools=["waitkit:deploy"]),
    })


def run_flow(runtime: Runtime, text: str = "billing") -> str:
    run, _ = submit_run(runtime.backends, NewRun(tenant_id=TENANT, agent="flow", input=text))
    asyncio.run(runtime.worker(1).run_until_idle())
    return run.id


def get(runtime: Runtime, run_id: str) -> Run:
    run = runtime.backends.store.get_run(TENANT, run_id)
    assert run is not None
    return run


def test_a_graph_loops_on_a_verdict_then_waits_for_approval_before_its_side_effect(
    runtime: Runtime, log: Path
) -> None:
    publish(runtime, RELEASE, ["no", "yes"])
    run_id = run_flow(runtime)

    run = get(runtime, run_id)
    assert run.status == "waiting" and waitkit.logged(log) == []
    assert run.waiting_for["kind"] == "approval"
    assert run.waiting_for["detail"] == {"node": "approve", "question": "Ship short note?"}
    assert runtime.backends.queue.stats().get("queued", 0) == 0

    answer(runtime.backends, run, "approval", {"approved": True, "comment": "go"})
    asyncio.run(runtime.worker(1).run_until_idle())

    run = get(runtime, run_id)
    assert (run.status, run.output) == ("succeeded", "short note (deployed billing)")
    assert waitkit.logged(log) == ["deploy billing"]
    steps = runtime.backends.store.list_steps(TENANT, run_id)
    assert [(s.kind, s.name) for s in steps] == [
        ("model", "draft"), ("branch", "review"), ("model", "draft"), ("branch", "review"),
        ("approval", "approve"), ("approval", "approve"), ("tool", "deploy"), ("end", "done")]
    assert steps[1].output == {"value": "no", "next": "draft"}
    assert steps[5].output == {"approved": True, "comment": "go", "next": "ship"}
    assert run.checkpoint["state"]["data"]["visits"] == {
        "draft": 2, "review": 2, "approve": 1, "ship": 1, "done": 1}


def test_a_rejection_takes_the_rejected_edge_and_skips_the_side_effect(
    runtime: Runtime, log: Path
) -> None:
    publish(runtime, RELEASE, ["yes"])
    run_id = run_flow(runtime)
    answer(runtime.backends, get(runtime, run_id), "approval", {"approved": False})
    asyncio.run(runtime.worker(1).run_until_idle())

    run = get(runtime, run_id)
    assert run.status == "succeeded" and waitkit.logged(log) == []
    assert [s.name for s in runtime.backends.store.list_steps(TENANT, run_id)][-2:] == [
        "approve", "done"]


def test_max_visits_fails_a_loop_that_does_not_end(runtime: Runtime, log: Path) -> None:
    publish(runtime, RELEASE, ["no", "no", "no"])
    run = get(runtime, run_flow(runtime))
    assert run.status == "failed"
    assert "graph node 'draft' ran 3 times (its max_visits)" in run.error


def test_a_branch_on_a_field_and_an_agent_node_that_runs_a_child(
    runtime: Runtime, log: Path
) -> None:
    graph = {
        "start": "pick",
        "nodes": {
            "pick": {"kind": "branch", "on": "data.route", "cases": {"x": "done"},
                     "default": "delegate"},
            "delegate": {"kind": "agent", "agent": "deployer", "task": "{input}",
                         "next": "done", "save": "report"},
            "done": {"kind": "end", "output": "report: {report}"},
        },
    }
    publish(runtime, graph, [], agents=["deployer"])
    run_id = run_flow(runtime, "search")

    run = get(runtime, run_id)
    assert (run.status, run.output) == ("succeeded", "report: done: deployed search")
    (child,) = runtime.backends.store.child_runs(TENANT, run_id)
    assert (child.agent, child.input, child.status) == ("deployer", "search", "succeeded")
    steps = runtime.backends.store.list_steps(TENANT, run_id)
    assert [(s.kind, s.name) for s in steps] == [
        ("branch", "pick"), ("tool", "deployer"), ("tool", "deployer"), ("end", "done")]
    assert steps[0].output == {"value": "null", "next": "delegate"}
    assert waitkit.logged(log) == ["deploy search"]


def test_a_graph_node_must_name_the_agent_s_tools(runtime: Runtime) -> None:
    from homeo.engine.agents import build_agent

    graph = {"start": "a", "nodes": {"a": {"kind": "tool", "tool": "rm", "next": "b"},
                                     "b": {"kind": "end"}}}
    spec = AgentSpec.model_validate({"name": "flow", "graph": graph})
    with pytest.raises(AgentError, match="graph node 'a': tool: 'rm' is not among its tools"):
        build_agent(spec, ScriptedModel([]))


def test_a_model_node_after_a_tool_node_gets_its_prompt_once_around_its_own_tools(
    runtime: Runtime, log: Path
) -> None:
    graph = {
        "start": "ship",
        "nodes": {
            "ship": {"kind": "tool", "tool": "deploy", "arguments": {"service": "{input}"},
                     "next": "report"},
            "report": {"kind": "model", "prompt": "Report on {output}", "tools": ["deploy"],
                       "next": "done"},
            "done": {"kind": "end"},
        },
    }
    def reporter(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
        if messages[-1].role == "tool":
            return f"reported: {messages[-1].content}"
        return tool_call("deploy", service="docs")

    runtime.models.add("test:reporter", ScriptedModel(reporter))
    runtime.agents.publish(TENANT, {"flow": AgentSpec.model_validate(
        {"name": "flow", "model": "test:reporter", "tools": ["waitkit:deploy"],
         "graph": graph})})
    run = get(runtime, run_flow(runtime, "api"))

    assert run.status == "succeeded"
    messages = run.checkpoint["state"]["messages"]
    prompts = [m["content"] for m in messages if m["role"] == "user"]
    assert prompts == ["api", "Report on deployed api"]  # not again after its own call
    assert run.output == "reported: deployed docs"
    steps = runtime.backends.store.list_steps(TENANT, run.id)
    assert [(s.kind, s.name) for s in steps] == [
        ("tool", "deploy"), ("model", "report"), ("tool", "deploy"), ("model", "report"),
        ("end", "done")]
    assert waitkit.logged(log) == ["deploy api", "deploy docs"]
