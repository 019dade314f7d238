"""Champion and challenger (homeo.engine.canary), with real runs on a SQLite
store and scripted models: the canary splits new runs as configured, a worse
challenger is rolled back and one as good is promoted, with the evidence;
`homeo agents canary|promote|rollback` do the same from the command line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine import canary
from homeo.engine.agents import AgentSpec
from homeo.engine.submit import submit_run
from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel
from homeo.runtime import Runtime
from homeo.store.models import NewRun

TENANT = "default"


def steady(messages: list[Message], tools: list[ToolSpec]) -> str:
    return "done"


def broken(messages: list[Message], tools: list[ToolSpec]) -> str:
    raise RuntimeError("this version of the agent is broken")


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    opened = Runtime.open(Settings(data_dir=tmp_path / "data", lease_seconds=5,
                                   poll_seconds=0.01, retry_base_seconds=0.0,
                                   retry_max_seconds=0.0))
    opened.models.add("test:steady", ScriptedModel(steady))
    opened.models.add("test:broken", ScriptedModel(broken))
    yield opened
    asyncio.run(opened.aclose())


def versions(runtime: Runtime, *models: str) -> list[str]:
    """Publish the agent `helper` once per model, in order: the last is current."""
    made: list[str] = []
    for model in models:
        runtime.agents.publish(TENANT, {"helper": AgentSpec(
            name="helper", model=f"test:{model}", max_steps=4 + len(made))})
        made.append(runtime.backends.store.get_agent(TENANT, "helper").version)
    return made


def submit(runtime: Runtime, count: int, prefix: str = "k") -> list[str]:
    return [submit_run(runtime.backends, NewRun(
        tenant_id=TENANT, agent="helper", input="go", idempotency_key=f"{prefix}{n}"))[0]
        .agent_version for n in range(count)]


def test_a_canary_sends_its_share_of_new_runs_to_the_challenger(runtime: Runtime) -> None:
    challenger, champion = versions(runtime, "steady", "broken")
    canary.start(runtime.backends.store, TENANT, "helper", challenger, 0.25, by="test",
                 now=time.time())
    picked = submit(runtime, 400)
    assert set(picked) == {challenger, champion}
    # 400 draws at 0.25: 100 expected, 8.7 standard deviations; 5 of them either side.
    assert 57 <= picked.count(challenger) <= 143
    # A resubmission is the same run, on the same version.
    assert submit(runtime, 400) == picked
    # Runs that name a version keep it.
    named, _ = submit_run(runtime.backends, NewRun(tenant_id=TENANT, agent="helper",
                                                   input="go", agent_version=champion))
    assert named.agent_version == champion


def test_a_worse_challenger_is_rolled_back_with_the_evidence(runtime: Runtime) -> None:
    bad, good = versions(runtime, "broken", "steady")
    store = runtime.backends.store
    canary.start(store, TENANT, "helper", bad, 0.5, min_runs=8, by="test", now=time.time())
    submit(runtime, 40)
    asyncio.run(runtime.worker(2).run_until_idle())
    [ended] = canary.judge_all(store, by="test-judge", now=time.time())
    assert ended.status == "rolled_back" and ended.ended_by == "test-judge"
    found = ended.evidence
    assert found["challenger"]["version"] == bad and found["challenger"]["succeeded"] == 0
    assert found["champion"]["runs"] == found["champion"]["succeeded"] > 0
    assert found["z"] < 0 and "worse" in found["why"]
    assert store.get_agent(TENANT, "helper").version == good
    # The share is gone: every new run goes to the champion; nothing left to judge.
    assert set(submit(runtime, 20, prefix="after")) == {None}  # the current version
    asyncio.run(runtime.worker(2).run_until_idle())
    ran = store.list_runs(TENANT, agent="helper", limit=20)
    assert {run.agent_version for run in ran} == {good}
    assert all(run.status == "succeeded" for run in ran)
    assert canary.judge_all(store, by="test-judge", now=time.time()) == []
    assert canary.get(store, TENANT, "helper", time.time()).status == "rolled_back"


def test_a_challenger_as_good_is_promoted(runtime: Runtime) -> None:
    newer, current = versions(runtime, "steady", "steady")
    assert newer != current  # two definitions (their max_steps differ)
    store = runtime.backends.store
    started = canary.start(store, TENANT, "helper", newer, 0.5, min_runs=4, by="test",
                           now=time.time())
    waiting = canary.judge(store, started, by="test", now=time.time())
    assert waiting.status == "active" and "waiting for 4" in waiting.evidence["why"]
    submit(runtime, 30)
    asyncio.run(runtime.worker(2).run_until_idle())
    ended = canary.judge(store, started, by="test", now=time.time())
    assert ended.status == "promoted" and "as good or better" in ended.evidence["why"]
    assert store.get_agent(TENANT, "helper").version == newer


@pytest.mark.parametrize(("challenger", "share", "says"), [
    ("nope", 0.1, "has no version 'nope'"),
    (None, 0.0, "share must be above 0"),
    (None, 1.5, "share must be above 0"),
    ("current", 0.1, "is the current version"),
])
def test_a_canary_that_cannot_work_is_refused(runtime: Runtime, challenger, share, says) -> None:
    older, current = versions(runtime, "steady", "broken")
    version = {None: older, "current": current}.get(challenger, challenger)
    with pytest.raises(canary.CanaryError, match=says):
        canary.start(runtime.backends.store, TENANT, "helper", version, share, by="test",
                     now=time.time())


def test_one_canary_at_a_time(runtime: Runtime) -> None:
    older, _ = versions(runtime, "steady", "broken")
    store = runtime.backends.store
    canary.start(store, TENANT, "helper", older, 0.1, by="test", now=time.time())
    with pytest.raises(canary.CanaryError, match="has a canary running already"):
        canary.start(store, TENANT, "helper", older, 0.2, by="test", now=time.time())


HOMEO = Path(sys.executable).parent / "homeo"


@pytest.mark.slow
def test_the_cli_starts_promotes_and_rolls_back(runtime: Runtime, tmp_path: Path) -> None:
    first, second = versions(runtime, "steady", "broken")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOMEO_")}
    data = str(runtime.settings.data_dir)

    def homeo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(HOMEO), "agents", *args, "--data-dir", data], env=clean,
                              capture_output=True, text=True, timeout=120)

    missing = homeo("canary", "helper")
    assert missing.returncode == 1 and "has no canary" in missing.stderr
    started = homeo("canary", "helper", "--challenger", first, "--share", "0.3")
    assert started.returncode == 0, started.stderr
    assert f"challenger {first} at 30%" in started.stdout and "active" in started.stdout
    refused = homeo("canary", "helper", "--challenger", "nope")
    assert refused.returncode == 1 and "has no version 'nope'" in refused.stderr
    rolled = homeo("rollback", "helper")
    assert rolled.returncode == 0 and f"challenger {first} rolled back" in rolled.stdout
    assert runtime.backends.store.get_agent(TENANT, "helper").version == second
    promoted = homeo("promote", "helper", first)
    assert promoted.returncode == 0 and f"now runs version {first}" in promoted.stdout
    assert runtime.backends.store.get_agent(TENANT, "helper").version == first
    assert homeo("promote", "helper", second).returncode == 0
    back = homeo("rollback", "helper")  # no canary: the version before the current one
    assert back.returncode == 0 and f"now runs version {first}" in back.stdout
    first_again = homeo("rollback", "helper")
    assert first_again.returncode == 1 and "no earlier version" in first_again.stderr


def evidence_of(challenger: tuple[int, int], champion: tuple[int, int]) -> dict:
    found = {role: {"version": role, "succeeded": ok, "runs": n}
             for role, (ok, n) in (("challenger", challenger), ("champion", champion))}
    found["z"] = canary._z(*challenger, *champion)
    return found


def test_a_challenger_that_breaks_a_run_success_slo_is_rolled_back() -> None:
    """8 of 10 against 10 of 10 is not yet worse by the z-test (min_runs 40),
    but 8 of 10 is surely under a 99% objective, and the champion is not."""
    trial = canary.Canary(tenant_id=TENANT, agent="helper", champion="a", challenger="b",
                          share=0.5, min_runs=40, started_at=0.0, started_by="test")
    found = evidence_of((8, 10), (10, 10))
    assert canary.decide(trial, found)[0] == "active"
    status, why = canary.decide(trial, found, [("runs-succeed", 0.99)])
    assert status == "rolled_back" and "breaks the SLO runs-succeed" in why
    # Both below it: the SLO says nothing about the challenger in particular.
    assert canary.decide(trial, evidence_of((8, 10), (8, 10)), [("runs-succeed", 0.99)])[0] == (
        "active")


def test_the_slos_that_count_are_run_success_ones_covering_the_agent(runtime: Runtime) -> None:
    from homeo.observe.slo.definitions import Slo

    trial = canary.Canary(tenant_id=TENANT, agent="helper", champion="a", challenger="b",
                          share=0.5, min_runs=40, started_at=0.0, started_by="test")
    slos = [Slo(name="all", kind="run_success", objective=0.99, window="30d"),
            Slo(name="mine", kind="run_success", objective=0.9, window="30d", agent="helper"),
            Slo(name="other", kind="run_success", objective=0.9, window="30d", agent="nope"),
            Slo(name="acme", kind="run_success", objective=0.9, window="30d", tenant="acme"),
            Slo(name="fast", kind="step_latency", objective=0.95, window="30d",
                threshold_seconds=30)]
    assert canary.objectives(slos, trial) == [("all", 0.99), ("mine", 0.9)]
