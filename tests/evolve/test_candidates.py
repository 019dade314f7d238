"""A search whose every evaluation is real runs of a suite on the scripted
model: candidates become versions of a shadow agent, the live one is untouched."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine.agents import AgentSpec
from homeo.evolve.candidates import SuiteEvaluator
from homeo.evolve.evals import load_suite
from homeo.evolve.genome import Genome, Space, from_spec
from homeo.evolve.search import Search, SearchConfig
from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.runtime import Runtime

CALCULATE = "homeo.examples.tools:calculate"
SUITE = """
name: arithmetic
cases:
  - id: multiply
    input: "6*7"
    expect: {contains: "42", tools_called: [calculate]}
  - id: add
    input: "2+3"
    expect: {contains: "5"}
"""


def agent_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    task = next(m.content for m in messages if m.role == "user")
    results = [m.content for m in messages if m.role == "tool"]
    if results:
        return results[-1]
    if tools:
        return tool_call("calculate", expression=task)
    return "I cannot calculate without a tool."


@pytest.fixture
def runtime(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data", lease_seconds=5, poll_seconds=0.01,
                        retry_base_seconds=0.0, retry_max_seconds=0.0)
    opened = Runtime.open(settings)
    opened.models.add("test:calc", ScriptedModel(agent_model))
    yield opened
    asyncio.run(opened.aclose())


@pytest.mark.slow
def test_a_search_evaluates_candidates_as_versions_of_a_shadow_agent(runtime: Runtime,
                                                                 tmp_path: Path) -> None:
    spec = AgentSpec(name="calc", model="test:calc", max_steps=1, tools=[])
    runtime.agents.publish("default", {"calc": spec})
    store = runtime.backends.store
    current = store.get_agent("default", "calc").version
    path = tmp_path / "arithmetic.yaml"
    path.write_text(SUITE)
    evaluate = SuiteEvaluator(runtime.backends, load_suite(path), tenant_id="default",
                              agent="calc", workers=lambda: runtime.worker(2), models=runtime.models.get,
                              poll_seconds=0.01)

    working = Genome(model="test:calc", temperature=0.0, max_steps=3, tools=(CALCULATE,))
    fitness = asyncio.run(evaluate(working, []))
    assert fitness.score == 1.0
    assert asyncio.run(evaluate(from_spec(spec), [])).score == 0.0

    space = Space(models=["test:calc"], max_steps=(1, 3), tools=[CALCULATE])
    config = SearchConfig(search_id="calc-1", generations=2, population=3, seed=1)
    state = asyncio.run(Search(store, config, space, from_spec(spec), evaluate).run())
    assert state.generation == 1
    versions = {v.version: v for v in store.list_agent_versions("default", "calc-evolve")}
    for candidate in state.population:
        kept = versions[candidate.fitness.version]
        assert kept.author == "evolve"
        assert AgentSpec.model_validate(kept.spec).max_steps == candidate.genome.max_steps
        uses_tool = CALCULATE in candidate.genome.tools and candidate.genome.max_steps >= 2
        assert candidate.fitness.score == (1.0 if uses_tool else 0.0)
        assert all(parent in versions for parent in candidate.parents)
    best = max(c.fitness.score for c in state.population)
    assert all(c.fitness.score == best for c in state.front())  # tokens are all 0 here
    assert store.get_agent("default", "calc").version == current
