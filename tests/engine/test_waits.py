"""Runs that wait for a person or for child runs, on SQLite and PostgreSQL.

A waiting run holds no job and no lease; answering it (or its children
ending) queues it again with a new job, and the step that waited runs again
and finds what it waited for. Side effects are counted in a log file.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine.agents import AgentSpec
from homeo.engine.react import ApprovalPolicy
from homeo.engine.submit import cancel_run, run_job_key, submit_run
from homeo.engine.waits import RunNotWaiting, Waits, answer
from homeo.llm.providers.scripted import ScriptedModel
from homeo.runtime import Runtime
from homeo.store.models import NewRun, Run

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
import waitkit  # noqa: E402

TENANT = "default"


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


def define(runtime: Runtime, *specs: tuple[str, str, list[str], dict]) -> None:
    """Publish agents (name, waitkit model function, tools, extra spec fields) at once."""
    published = {}
    for name, function, tools, extra in specs:
        runtime.models.add(f"test:{name}", ScriptedModel(getattr(waitkit, function)))
        published[name] = AgentSpec(name=name, model=f"test:{name}", max_steps=4,
                                    tools=[f"waitkit:{tool}" for tool in tools], **extra)
    runtime.agents.publish(TENANT, published)


def submit(runtime: Runtime, agent: str, text: str) -> str:
    run, _ = submit_run(runtime.backends, NewRun(tenant_id=TENANT, agent=agent, input=text))
    return run.id


def work(runtime: Runtime) -> int:
    return asyncio.run(runtime.worker(1).run_until_idle())


def get(runtime: Runtime, run_id: str) -> Run:
    run = runtime.backends.store.get_run(TENANT, run_id)
    assert run is not None
    return run


def test_an_approval_pauses_the_run_without_a_job_until_a_person_approves(
    runtime: Runtime, log: Path
) -> None:
    define(runtime, ("deployer", "deployer_model", ["deploy"],
                     {"approval": ApprovalPolicy(tools=["deploy"])}))
    run_id = submit(runtime, "deployer", "billing")
    assert work(runtime) == 1
    run = get(runtime, run_id)
    assert run.status == "waiting" and waitkit.logged(log) == []
    assert run.waiting_for["kind"] == "approval"
    assert run.waiting_for["detail"]["tool"] == "deploy"
    assert run.waiting_for["detail"]["arguments"] == {"service": "billing"}
    # Nothing is queued or leased for it: no worker holds it or polls for it.
    stats = runtime.backends.queue.stats()
    assert (stats.get("queued", 0), stats.get("leased", 0)) == (0, 0)
    assert work(runtime) == 0

    resumed = answer(runtime.backends, run, "approval", {"approved": True, "comment": "ok"})
    assert resumed.status == "queued" and resumed.wakes == 1
    assert runtime.backends.queue.find(TENANT, run_job_key(resumed)).status == "queued"
    assert work(runtime) == 1
    run = get(runtime, run_id)
    assert (run.status, run.output) == ("succeeded", "done: deployed billing")
    assert waitkit.logged(log) == ["deploy billing"]
    steps = runtime.backends.store.list_steps(TENANT, run_id)
    assert [(s.kind, s.name, s.status) for s in steps] == [
        ("model", "model", "succeeded"), ("tool", "deploy", "succeeded"),
        ("tool", "deploy", "succeeded"), ("model", "model", "succeeded")]
    assert steps[1].output["waiting"]["kind"] == "approval"
    assert steps[2].output == {"result": "deployed billing"}
    # The state kept at the waiting step (and after) carries the decision.
    for seq in (1, 2, 3):
        state = runtime.backends.store.checkpoint_at(TENANT, run_id, seq)["state"]
        assert list(state["decisions"].values()) == [{"approved": True, "comment": "ok"}], seq


def test_a_second_answer_is_refused_and_names_what_the_run_is_doing(
    runtime: Runtime, log: Path
) -> None:
    define(runtime, ("payer", "payer_model", ["wire_money"], {}))  # the tool asks itself
    run_id = submit(runtime, "payer", "500")
    work(runtime)
    run = get(runtime, run_id)
    answer(runtime.backends, run, "approval", {"approved": True, "comment": ""})
    with pytest.raises(RunNotWaiting, match=f"run {run_id} is queued, not for an approval"):
        answer(runtime.backends, get(runtime, run_id), "approval", {"approved": True})
    with pytest.raises(RunNotWaiting, match="answered, cancelled or ended meanwhile"):
        answer(runtime.backends, run, "approval", {"approved": False})  # a stale read
    work(runtime)
    assert waitkit.logged(log) == ["wire 500"]


def test_an_approval_may_change_the_arguments(runtime: Runtime, log: Path) -> None:
    define(runtime, ("payer", "payer_model", ["wire_money"], {}))
    run_id = submit(runtime, "payer", "5000")
    work(runtime)
    answer(runtime.backends, get(runtime, run_id), "approval",
           {"approved": True, "comment": "too much", "arguments": {"amount": 50}})
    work(runtime)
    run = get(runtime, run_id)
    assert waitkit.logged(log) == ["wire 50"]
    assert run.status == "succeeded" and "wired 50 EUR" in run.output
    assert "a person changed the arguments" in run.output


def test_a_rejection_is_told_to_the_model_and_the_tool_never_runs(
    runtime: Runtime, log: Path
) -> None:
    define(runtime, ("payer", "payer_model", ["wire_money"], {}))
    run_id = submit(runtime, "payer", "900")
    work(runtime)
    answer(runtime.backends, get(runtime, run_id), "approval",
           {"approved": False, "comment": "not this month"})
    work(runtime)
    run = get(runtime, run_id)
    assert waitkit.logged(log) == []
    assert (run.status, run.output) == (
        "succeeded", "done: error: not done: a person rejected it: not this month")


def test_a_rejection_can_fail_the_run(runtime: Runtime, log: Path) -> None:
    define(runtime, ("payer", "payer_model", ["wire_money"],
                     {"approval": ApprovalPolicy(on_reject="fail")}))
    run_id = submit(runtime, "payer", "900")
    work(runtime)
    answer(runtime.backends, get(runtime, run_id), "approval", {"approved": False})
    work(runtime)
    run = get(runtime, run_id)
    assert run.status == "failed" and waitkit.logged(log) == []
    assert run.error == ("the call to 'wire_money' was not made: a person rejected it"
                         " (no comment)")


@pytest.mark.parametrize(("on_timeout", "status"), [("reject", "succeeded"), ("fail", "failed")])
def test_an_approval_deadline_rejects_or_fails_as_the_agent_says(
    runtime: Runtime, log: Path, on_timeout: str, status: str
) -> None:
    define(runtime, ("deployer", "deployer_model", ["deploy"],
                     {"approval": ApprovalPolicy(tools=["deploy"], timeout=3600,
                                                 on_timeout=on_timeout)}))
    run_id = submit(runtime, "deployer", "search")
    work(runtime)
    run = get(runtime, run_id)
    deadline = run.waiting_for["deadline"]
    assert deadline == pytest.approx(run.waiting_since + 3600, abs=60)
    waits = Waits(runtime.backends)
    assert waits.sweep(now=deadline - 1) == []  # not yet
    assert waits.sweep(now=deadline) == [run_id]
    work(runtime)
    run = get(runtime, run_id)
    assert run.status == status and waitkit.logged(log) == []
    if status == "succeeded":
        assert run.output == ("done: error: not done: nobody approved it in time:"
                              " no decision before the deadline")
    else:
        assert "nobody" in run.error and "deadline" in run.error


def test_a_tool_can_ask_a_person_and_gets_the_answer(runtime: Runtime, log: Path) -> None:
    define(runtime, ("greeter", "greeter_model", ["greet_person"], {}))
    run_id = submit(runtime, "greeter", "hi")
    work(runtime)
    run = get(runtime, run_id)
    assert run.status == "waiting"
    assert run.waiting_for["kind"] == "input"
    assert run.waiting_for["detail"]["question"] == "What is your name?"
    with pytest.raises(RunNotWaiting, match="waits for an answer to 'What is your name"):
        answer(runtime.backends, run, "approval", {"approved": True})
    answer(runtime.backends, run, "input", {"answer": "Ada"})
    work(runtime)
    run = get(runtime, run_id)
    assert (run.status, run.output) == ("succeeded", "hello Ada")
    assert waitkit.logged(log) == ["greet Ada"]


def test_waiting_time_is_kept_apart_from_the_run_s_time(runtime: Runtime, log: Path) -> None:
    define(runtime, ("greeter", "greeter_model", ["greet_person"], {}))
    run_id = submit(runtime, "greeter", "hi")
    work(runtime)
    run = get(runtime, run_id)
    # Answered three days later: three days waited, which timeouts.run never counts.
    resumed = runtime.backends.store.resume_run(
        TENANT, run_id, wait_id=run.waiting_for["id"],
        now=run.waiting_since + 3 * 86400)
    assert resumed.waited_seconds == pytest.approx(3 * 86400)


def test_a_sub_agent_runs_as_a_child_and_the_parent_resumes_with_its_answer(
    runtime: Runtime, log: Path
) -> None:
    define(runtime, ("manager", "manager_model", [], {"agents": ["deployer"]}),
           ("deployer", "deployer_model", ["deploy"], {"description": "Deploys services."}))
    parent_id = submit(runtime, "manager", "checkout")
    assert work(runtime) == 3  # the parent until it waits, the child, the parent again
    parent = get(runtime, parent_id)
    assert (parent.status, parent.output) == (
        "succeeded", "the deployer says: done: deployed checkout")
    children = runtime.backends.store.child_runs(TENANT, parent_id)
    assert [(c.agent, c.input, c.status, c.parent_run_id) for c in children] == [
        ("deployer", "checkout", "succeeded", parent_id)]
    assert waitkit.logged(log) == ["deploy checkout"]
    assert parent.wakes == 1


def test_the_sub_agent_tool_tells_the_model_what_the_agent_does(
    runtime: Runtime, log: Path
) -> None:
    define(runtime, ("manager", "manager_model", [], {"agents": ["deployer"]}),
           ("deployer", "deployer_model", ["deploy"], {"description": "Deploys services."}))
    agent = asyncio.run(runtime.agents.aget(TENANT, "manager"))
    (tool,) = agent.tools
    assert (tool.name, tool.description) == ("deployer", "Deploys services.")
    assert tool.parameters["required"] == ["task"]
    assert "context" not in tool.parameters["properties"]


def test_a_repeated_step_never_starts_a_second_child(runtime: Runtime, log: Path) -> None:
    from homeo.engine.subagents import StoreChildRuns

    define(runtime, ("manager", "manager_model", [], {"agents": ["deployer"]}),
           ("deployer", "deployer_model", ["deploy"], {}))
    parent = get(runtime, submit(runtime, "manager", "x"))
    children = StoreChildRuns(runtime.backends, parent)
    first = asyncio.run(children.start("deployer", "x", key=f"{parent.id}:t1:call_0"))
    again = asyncio.run(children.start("deployer", "x", key=f"{parent.id}:t1:call_0"))
    assert first.id == again.id
    assert len(runtime.backends.store.child_runs(TENANT, parent.id)) == 1


def test_the_sweeper_wakes_a_parent_whose_wake_up_was_lost(runtime: Runtime, log: Path) -> None:
    define(runtime, ("manager", "manager_model", [], {"agents": ["deployer"]}),
           ("deployer", "deployer_model", ["deploy"], {}))
    parent_id = submit(runtime, "manager", "lost")
    worker = runtime.worker(1)
    store = runtime.backends.store
    asyncio.run(worker.process(runtime.backends.queue.claim("w", 5)))  # the parent waits
    (child,) = store.child_runs(TENANT, parent_id)
    # The child's worker ends it and dies before waking the parent.
    store.transition_run(TENANT, child.id, "succeeded", allowed_from={"queued"},
                         output="done by hand")
    assert get(runtime, parent_id).status == "waiting"
    assert Waits(runtime.backends).sweep() == [parent_id]
    work(runtime)  # the child's own job finds it ended; the parent resumes
    assert get(runtime, parent_id).output == "the deployer says: done by hand"


def test_cancelling_a_parent_cancels_its_children(runtime: Runtime, log: Path) -> None:
    define(runtime, ("manager", "manager_model", [], {"agents": ["deployer"]}),
           ("deployer", "deployer_model", ["deploy"], {"approval": ApprovalPolicy(
               tools=["deploy"])}))
    parent_id = submit(runtime, "manager", "api")
    work(runtime)  # the parent waits for the child; the child waits for approval
    (child,) = runtime.backends.store.child_runs(TENANT, parent_id)
    assert get(runtime, child.id).status == "waiting"
    cancel_run(runtime.backends, TENANT, parent_id)
    assert get(runtime, parent_id).status == "cancelled"
    child = get(runtime, child.id)
    assert child.status == "cancelled"
    assert child.error == f"its parent run {parent_id} was cancelled"
    assert work(runtime) == 0 and waitkit.logged(log) == []


def test_a_child_that_fails_is_reported_to_the_parent_s_model(
    runtime: Runtime, log: Path
) -> None:
    define(runtime, ("manager", "manager_model", [], {"agents": ["deployer"]}),
           ("deployer", "deployer_model", ["deploy"], {"approval": ApprovalPolicy(
               tools=["deploy"], on_reject="fail")}))
    parent_id = submit(runtime, "manager", "api")
    work(runtime)
    (child,) = runtime.backends.store.child_runs(TENANT, parent_id)
    answer(runtime.backends, get(runtime, child.id), "approval", {"approved": False})
    work(runtime)
    parent = get(runtime, parent_id)
    assert parent.status == "succeeded"
    assert parent.output.startswith(
        f"the deployer says: error: agent 'deployer' (run {child.id}) failed: the call to")


def test_a_child_gets_what_its_parent_has_left_as_its_budget(runtime: Runtime, log: Path) -> None:
    from homeo.engine.budgets import RunBudget

    define(runtime, ("manager", "manager_model", [], {"agents": ["deployer"],
                                                      "budget": RunBudget(run_tokens=50)}),
           ("deployer", "deployer_model", ["deploy"], {}))
    parent_id = submit(runtime, "manager", "web")
    work(runtime)
    first = runtime.backends.store.list_steps(TENANT, parent_id)[0]  # before the hand-off
    used = first.input_tokens + first.output_tokens
    (child,) = runtime.backends.store.child_runs(TENANT, parent_id)
    assert used > 0 and child.token_budget == 50 - used
    assert get(runtime, parent_id).status == "succeeded"

    # A parent with one token left after its first turn: the child's share is 1.
    define(runtime, ("manager", "manager_model", [], {"agents": ["deployer"],
                                                      "budget": RunBudget(run_tokens=used + 1)}),
           ("deployer", "deployer_model", ["deploy"], {}))
    parent_id = submit(runtime, "manager", "api")
    work(runtime)
    (child,) = runtime.backends.store.child_runs(TENANT, parent_id)
    assert child.token_budget == 1 and child.status == "failed"
    assert child.error.startswith("this sub-agent run's share of its parent's token budget"
                                  " (1 tokens")
    parent = get(runtime, parent_id)
    assert parent.output.startswith(f"the deployer says: error: agent 'deployer' (run"
                                    f" {child.id}) failed: this sub-agent run's share")
