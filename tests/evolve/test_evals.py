"""An evaluation suite run through the queue against the scripted model, with
exact scores; results are stored per version and compare across versions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine.agents import AgentSpec
from homeo.evolve.evals import SuiteError, load_suite, run_suite
from homeo.llm.base import Message, ModelError, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.runtime import Runtime

SUITE = """
name: arithmetic
cases:
  - id: multiply
    input: "6*7"
    expect: {contains: "42", tools_called: [calculate]}
  - id: wrong-exact
    input: "6*7"
    expect: {exact: "41", regex: "^4\\\\d$"}
  - id: json
    input: hello
    expect:
      json_schema: {type: object, required: [greeting]}
      tools_not_called: [calculate]
  - id: judged
    input: hello
    expect: {judge: {rubric: "Is the answer friendly?", model: "test:judge"}}
  - id: broken
    input: explode
    expect: {contains: "x"}
"""


def agent_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    task = next(m.content for m in messages if m.role == "user")
    results = [m.content for m in messages if m.role == "tool"]
    if task == "explode":
        raise ModelError("scripted failure")
    if task == "hello":
        return '{"greeting": "hi"}'
    return results[-1] if results else tool_call("calculate", expression=task)


@pytest.fixture
def runtime(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data", lease_seconds=5, poll_seconds=0.01,
                        retry_base_seconds=0.0, retry_max_seconds=0.0)
    opened = Runtime.open(settings)
    opened.models.add("test:calc", ScriptedModel(agent_model))
    opened.models.add("test:judge", ScriptedModel(
        lambda messages, tools: '{"score": 0.75, "reason": "friendly enough"}'))
    yield opened
    asyncio.run(opened.aclose())


def publish(runtime: Runtime, max_steps: int) -> str:
    spec = AgentSpec(name="calc", model="test:calc", max_steps=max_steps,
                     tools=["homeo.examples.tools:calculate"])
    runtime.agents.publish("default", {"calc": spec})
    return runtime.backends.store.get_agent("default", "calc").version


def evaluate(runtime: Runtime, path: Path, version: str):
    return asyncio.run(run_suite(runtime.backends, load_suite(path), tenant_id="default",
                                 agent="calc", version=version, worker=runtime.worker(2),
                                 models=runtime.models.get, poll_seconds=0.01))


def test_a_fixed_suite_scores_exactly(runtime: Runtime, tmp_path: Path) -> None:
    suite = tmp_path / "arithmetic.yaml"
    suite.write_text(SUITE)
    first = publish(runtime, max_steps=5)
    report = evaluate(runtime, suite, first)
    by_case = {result.case_id: result for result in report.cases}
    assert {case: (r.score, r.passed) for case, r in by_case.items()} == {
        "multiply": (1.0, True), "wrong-exact": (0.5, False), "json": (1.0, True),
        "judged": (0.75, True), "broken": (0.0, False)}
    assert [c["reason"] for c in by_case["wrong-exact"].checks] == ["got '42'", "matches"]
    assert by_case["judged"].checks == [{"kind": "judge", "score": 0.75, "passed": True,
                                         "reason": "friendly enough"}]
    assert by_case["broken"].status == "failed"
    assert by_case["broken"].checks[0]["reason"].startswith("the run failed: model")
    assert report.score.value == pytest.approx(0.65)
    assert (report.pass_rate.value, report.pass_rate.n) == (0.6, 5)
    runs = [runtime.backends.store.get_run("default", r.run_id) for r in report.cases]
    assert {run.agent_version for run in runs} == {first}
    # A second version, evaluated on the same suite while the first stays
    # runnable: each version keeps its own results.
    second = publish(runtime, max_steps=1)  # too few steps to call the tool and answer
    again = evaluate(runtime, suite, second)
    assert again.score.value < report.score.value
    store = runtime.backends.store
    assert len(store.list_eval_results("default", "calc", agent_version=first)) == 5
    assert [r.eval_id for r in store.list_eval_results(
        "default", "calc", agent_version=second)] == [again.eval_id] * 5
    old = evaluate(runtime, suite, first)  # the older version still runs as it was
    assert old.score.value == pytest.approx(0.65)


@pytest.mark.parametrize(("text", "suffix", "message"), [
    ("name: s\ncases: []\n", ".yaml", "cases: List should have at least 1 item"),
    ("name: s\ncases: [{id: a, input: x, expect: {}}]\n", ".yaml", "expect has no check"),
    ("name: s\ncases: [{id: a, input: x, expect: {regex: '('}}]\n", ".yaml",
     "not a valid regular expression"),
    ('{"id": "a", "input": "x", "expect": {"exact": "y"}}\n'
     '{"id": "a", "input": "z", "expect": {"exact": "y"}}\n', ".jsonl", "used twice"),
    ("cases: x", ".txt", "a suite is a .yaml, .yml or .jsonl file"),
])
def test_bad_suites_say_what_to_fix(tmp_path: Path, text: str, suffix: str,
                                    message: str) -> None:
    path = tmp_path / f"suite{suffix}"
    path.write_text(text)
    with pytest.raises(SuiteError, match=message):
        load_suite(path)


def test_a_jsonl_suite_is_named_after_its_file(tmp_path: Path) -> None:
    path = tmp_path / "smoke.jsonl"
    path.write_text('{"id": "a", "input": "x", "expect": {"contains": ["y", "z"]}}\n')
    suite = load_suite(path)
    assert (suite.name, suite.cases[0].expect.contains) == ("smoke", ["y", "z"])


def test_the_example_suite_for_the_calculator_loads() -> None:
    import homeo.examples

    suite = load_suite(Path(homeo.examples.__file__).parent / "evals" / "calculator.yaml")
    assert suite.name == "calculator"
    assert [case.id for case in suite.cases] == ["product", "sum", "division", "power"]
    assert all(case.expect.tools_called == ["calculate"] for case in suite.cases)
