"""The shipped example agents on the shipped local model (SmolLM2-135M), end to end.

A new user's first runs: each example agent gets several inputs through the
real queue, worker and engine, and each answer is checked for what the user
asked (the arithmetic's value, the word count, the fact). Tool agents must
call their tool exactly once.

The pattern examples (approval, supervisor, plan and execute, reflection) are
beyond a 135M model's judgement, so their test checks the mechanics: the
steps each pattern takes, the waits, the child runs, the plan and critiques.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine.waits import answer
from homeo.engine.submit import submit_run
from homeo.runtime import Runtime
from homeo.store.models import NewRun, Run

pytestmark = pytest.mark.slow

RUN_DEADLINE_SECONDS = 1800.0  # twelve runs, on a busy 2-core machine

CALCULATOR = {
    "What is 17 * 23?": 391,
    "What is 120 / 8 + 3?": 18.0,
    "How much is 2 ** 10?": 1024,
    "How much is 9 times 8?": 72,
}
TEXT_STATS = {
    "Count words: alpha beta gamma delta epsilon": 5,
    "Count words: one two three": 3,
    "Count the words in: I like green apples and red pears": 7,
    "word count: Lorem ipsum dolor sit amet consectetur": 6,
}
ASSISTANT = {  # each answer must hold one of these words
    "What is the capital of France?": ("paris",),
    "What is the capital of Japan?": ("tokyo",),
    "How many legs does a spider have?": ("eight", "8"),
    "What is the largest ocean on Earth?": ("pacific",),
}


def run_all(tmp_path: Path, inputs: list[tuple[str, str]]) -> list[tuple[Run, list[str]]]:
    """Each (agent, input) run to its end by an in-process worker; each run and
    the names of its steps."""
    runtime = Runtime.open(Settings(data_dir=tmp_path / "data", poll_seconds=0.05))
    try:
        runtime.publish_agents()
        tenant = runtime.settings.default_tenant
        store = runtime.backends.store
        runs = [submit_run(runtime.backends, NewRun(tenant_id=tenant, agent=agent, input=text))[0]
                for agent, text in inputs]

        async def work() -> list[Run]:
            stop = asyncio.Event()
            serving = asyncio.create_task(runtime.worker(concurrency=1).serve(stop))
            deadline = time.monotonic() + RUN_DEADLINE_SECONDS
            try:
                while True:
                    current = [store.get_run(tenant, run.id) for run in runs]
                    if all(run.is_final for run in current):
                        return current
                    assert time.monotonic() < deadline, "the example runs did not finish"
                    await asyncio.sleep(0.2)
            finally:
                stop.set()
                await serving

        finished = asyncio.run(work())
        return [(run, [step.name for step in store.list_steps(tenant, run.id)])
                for run in finished]
    finally:
        asyncio.run(runtime.aclose())


def test_each_example_agent_answers_its_inputs_correctly(tmp_path: Path) -> None:
    inputs = [("calculator", text) for text in CALCULATOR]
    inputs += [("text-stats", text) for text in TEXT_STATS]
    inputs += [("assistant", text) for text in ASSISTANT]

    results = run_all(tmp_path, inputs)

    problems = []
    for (agent, text), (run, steps) in zip(inputs, results, strict=True):
        output = run.output or ""
        if agent == "calculator":
            ok = output.endswith(f" = {CALCULATOR[text]}") and steps == ["model", "calculate"]
        elif agent == "text-stats":
            ok = output.endswith(f" has {TEXT_STATS[text]} words.") and steps == [
                "model", "word_count"]
        else:
            ok = any(word in output.lower() for word in ASSISTANT[text]) and steps == ["model"]
        if run.status != "succeeded" or not ok:
            problems.append(f"{agent} {text!r}: {run.status} {output or run.error!r} {steps}")
    assert problems == []


def test_the_pattern_examples_take_their_steps(tmp_path: Path) -> None:
    runtime = Runtime.open(Settings(data_dir=tmp_path / "data", poll_seconds=0.05))
    try:
        runtime.publish_agents()
        tenant = runtime.settings.default_tenant
        store = runtime.backends.store
        inputs = {"careful-calc": "What is 17 * 23?", "desk": "What is 9 times 8?",
                  "planner": "What is 2 ** 10 + 6?", "reviewer": "What is the capital of Japan?"}
        runs = {agent: submit_run(runtime.backends, NewRun(tenant_id=tenant, agent=agent,
                                                           input=text))[0]
                for agent, text in inputs.items()}
        approved: list[dict] = []

        async def work() -> dict[str, Run]:
            stop = asyncio.Event()
            serving = asyncio.create_task(runtime.worker(concurrency=2).serve(stop))
            deadline = time.monotonic() + RUN_DEADLINE_SECONDS
            try:
                while True:
                    current = {agent: store.get_run(tenant, run.id) for agent, run in runs.items()}
                    careful = current["careful-calc"]
                    if careful.status == "waiting":  # a person approves the calculation
                        approved.append(careful.waiting_for)
                        answer(runtime.backends, careful, "approval",
                               {"approved": True, "comment": "fine"})
                    if all(run.is_final for run in current.values()):
                        return current
                    assert time.monotonic() < deadline, "the example runs did not finish"
                    await asyncio.sleep(0.2)
            finally:
                stop.set()
                await serving

        finished = asyncio.run(work())
        steps = {agent: store.list_steps(tenant, run.id) for agent, run in finished.items()}

        # careful-calc waited for a person before its calculation, then did it once.
        careful = finished["careful-calc"]
        assert careful.status == "succeeded" and careful.output.endswith(" = 391"), careful
        assert [a["kind"] for a in approved] == ["approval"]
        assert approved[0]["detail"]["tool"] == "calculate"
        assert [(s.name, "waiting" in (s.output or {})) for s in steps["careful-calc"]] == [
            ("model", False), ("calculate", True), ("calculate", False)]

        # desk routed to its agents; each hand-off a child run that ended.
        desk = finished["desk"]
        assert steps["desk"][0].kind == "route"
        children = store.child_runs(tenant, desk.id)
        assert {child.agent for child in children} <= {"calculator", "text-stats"}
        assert all(child.is_final for child in children)
        handed = {run_id for s in steps["desk"] if s.kind == "tool" and "waiting" in s.output
                  for run_id in s.output["waiting"]["detail"]["runs"]}
        assert handed == {child.id for child in children}
        assert desk.status == "succeeded" or "supervisor.max_rounds" in desk.error

        # planner wrote a plan and ran each item through the model and tool steps.
        planner = finished["planner"]
        assert steps["planner"][0].kind == "plan" and steps["planner"][0].output["plan"]
        plan = planner.checkpoint["state"]["data"]["plan"]
        assert 1 <= len(plan["items"]) <= 3
        if planner.status == "succeeded":
            assert steps["planner"][-1].name == "answer"
            assert all(item["status"] in ("done", "failed") for item in plan["items"])

        # reviewer's draft was critiqued (a JSON verdict), and revised when it failed.
        reviewer = finished["reviewer"]
        assert reviewer.status == "succeeded" and reviewer.output
        critiques = reviewer.checkpoint["state"]["data"]["critiques"]
        kinds = [s.kind for s in steps["reviewer"]]
        assert kinds[:2] == ["model", "critique"] and len(critiques) == kinds.count("critique")
        assert all(isinstance(c["pass"], bool) for c in critiques)
    finally:
        asyncio.run(runtime.aclose())
