"""Reflection: a critique step (JSON verdict) after each draft; revise until it passes.

Real SQLite store and the scripted model.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from homeo.backends import Backends, open_backends
from homeo.engine.agents import AgentSpec, build_agent
from homeo.engine.reflect import CRITIC, VERDICT_SCHEMA, ReflectPolicy
from homeo.engine.runner import execute
from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel
from homeo.store.models import NewRun, Run


@pytest.fixture
def backends(tmp_path: Path):
    opened = open_backends(f"sqlite:///{tmp_path / 'engine.db'}")
    yield opened
    opened.close()


def new_run(backends: Backends, text: str) -> Run:
    run, _ = backends.store.create_run(NewRun(tenant_id="t", agent="a", input=text))
    return backends.store.transition_run("t", run.id, "running", allowed_from={"queued"})


def writer_and_critic(drafts: list[str], passes: list[bool]):
    """Answers with the next draft; as the critic, with the next verdict."""
    def reply(messages: list[Message], tools: list[ToolSpec]) -> str:
        if messages[0].content == CRITIC:
            passed = passes.pop(0)
            return json.dumps({"pass": passed, "reasons": [] if passed else ["not Paris"]})
        return drafts.pop(0)
    return reply


def run_agent(backends: Backends, model: ScriptedModel, reflect: ReflectPolicy,
              max_steps: int = 5) -> tuple[Run, list]:
    spec = AgentSpec(name="a", model="test", max_steps=max_steps, reflect=reflect)
    agent = build_agent(spec, model)
    run = new_run(backends, "What is the capital of France?")
    asyncio.run(execute(backends.store, run, agent.graph))
    return backends.store.get_run("t", run.id), backends.store.list_steps("t", run.id)


def test_a_failed_critique_sends_the_agent_back_to_revise_until_it_passes(
    backends: Backends,
) -> None:
    model = ScriptedModel(writer_and_critic(["Lyon.", "Paris."], [False, True]))

    run, steps = run_agent(backends, model, ReflectPolicy(max_rounds=3, criteria="name it"))

    assert run.checkpoint["state"]["output"] == "Paris."
    assert [(s.kind, s.status) for s in steps] == [
        ("model", "succeeded"), ("critique", "succeeded"), ("model", "succeeded"),
        ("critique", "succeeded")]
    assert steps[1].input["draft"] == "Lyon."
    assert steps[1].output == {"round": 1, "pass": False, "reasons": ["not Paris"],
                               "draft": "Lyon.", "then": "revise"}
    assert steps[3].output["pass"] is True and steps[3].output["then"] == "passed"
    # The critique asked for the verdict schema and saw the task, draft and criteria.
    assert model.schemas == [None, VERDICT_SCHEMA, None, VERDICT_SCHEMA]
    critique = model.requests[1][1].content
    assert "What is the capital of France?" in critique and "Lyon." in critique
    assert "Criteria: name it" in critique
    # The revision saw the critique's reasons.
    assert "- not Paris" in model.requests[2][-1].content
    assert [c["pass"] for c in run.checkpoint["state"]["data"]["critiques"]] == [False, True]


def test_max_rounds_ends_with_the_last_draft(backends: Backends) -> None:
    model = ScriptedModel(writer_and_critic(["Lyon.", "Nice."], [False, False]))

    run, steps = run_agent(backends, model, ReflectPolicy(max_rounds=2))

    assert run.checkpoint["state"]["output"] == "Nice."
    assert [s.kind for s in steps] == ["model", "critique", "model", "critique"]
    assert steps[-1].output["then"] == "max_rounds reached: the last draft is the answer"


def test_no_revision_without_a_model_turn_left(backends: Backends) -> None:
    model = ScriptedModel(writer_and_critic(["Lyon."], [False]))

    run, steps = run_agent(backends, model, ReflectPolicy(max_rounds=3), max_steps=1)

    assert run.checkpoint["state"]["output"] == "Lyon."
    assert steps[-1].output["then"] == "max_steps reached: no model turn is left to revise"


def test_a_verdict_that_is_not_json_is_repaired_once(backends: Backends) -> None:
    model = ScriptedModel(["Paris.", "looks fine", json.dumps({"pass": True, "reasons": []})])

    run, steps = run_agent(backends, model, ReflectPolicy())

    assert run.checkpoint["state"]["output"] == "Paris."
    assert steps[-1].output["pass"] is True
    assert "does not match the required JSON schema" in model.requests[2][-1].content
