"""The worker settles runs and jobs together, on a real SQLite database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine.agents import AgentSpec
from homeo.engine.submit import cancel_run, submit_run
from homeo.llm.base import Message, ModelError, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.runtime import Runtime
from homeo.store.models import NewRun


@pytest.fixture
def runtime(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, lease_seconds=5, poll_seconds=0.01,
                        retry_base_seconds=0.0, retry_max_seconds=0.0)
    opened = Runtime.open(settings)
    yield opened
    asyncio.run(opened.aclose())


def define(runtime: Runtime, name: str, model, tools: list[str] | None = None) -> None:
    runtime.models.add(f"test:{name}", model)
    spec = AgentSpec(name=name, model=f"test:{name}", tools=tools or [])
    runtime.agents.publish("default", {name: spec})


def submit(runtime: Runtime, agent: str, text: str = "go", max_attempts: int = 3) -> str:
    run, _ = submit_run(runtime.backends, NewRun(tenant_id="default", agent=agent, input=text),
                        max_attempts=max_attempts)
    return run.id


def state(runtime: Runtime, run_id: str):
    run = runtime.backends.store.get_run("default", run_id)
    job = runtime.backends.queue.find("default", f"run:{run_id}")
    return run, job


def test_success_settles_run_and_job(runtime: Runtime) -> None:
    define(runtime, "calc", ScriptedModel([tool_call("calculate", expression="6*7"), "42"]),
           ["homeo.examples.tools:calculate"])
    run_id = submit(runtime, "calc")
    assert asyncio.run(runtime.worker(1).run_until_idle()) == 1
    run, job = state(runtime, run_id)
    assert (run.status, run.output, job.status) == ("succeeded", "42", "done")
    samples = runtime.metrics.registry.get_sample_value
    assert samples("homeo_step_seconds_count", {"kind": "model"}) == 2
    assert samples("homeo_step_seconds_count", {"kind": "tool"}) == 1


def test_retryable_errors_back_off_then_succeed(runtime: Runtime) -> None:
    answers: list[object] = [ModelError("overloaded", retryable=True), "fine now"]

    def flaky(messages: list[Message], tools: list[ToolSpec]) -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    define(runtime, "flaky", ScriptedModel(flaky))
    run_id = submit(runtime, "flaky")
    worker = runtime.worker(1)
    asyncio.run(worker.process(runtime.backends.queue.claim(worker.worker_id, 5)))
    run, job = state(runtime, run_id)
    assert run.status == "queued" and "overloaded" in run.error
    assert job.status == "queued" and job.attempts == 1
    asyncio.run(worker.run_until_idle())
    run, job = state(runtime, run_id)
    assert (run.status, run.output, run.error, job.status) == ("succeeded", "fine now", None,
                                                               "done")


def test_out_of_attempts_dead_letters_and_fails_the_run(runtime: Runtime) -> None:
    def down(messages, tools):
        raise ModelError("connection refused", retryable=True)

    define(runtime, "down", ScriptedModel(down))
    run_id = submit(runtime, "down", max_attempts=2)
    asyncio.run(runtime.worker(1).run_until_idle())
    run, job = state(runtime, run_id)
    assert run.status == "failed" and job.status == "dead"
    assert run.error.startswith("gave up after 2 attempts; last error: RetryableError")


def test_expired_leases_past_max_attempts_fail_the_run(runtime: Runtime) -> None:
    define(runtime, "echo", ScriptedModel(["never"]))
    run_id = submit(runtime, "echo", max_attempts=1)
    queue = runtime.backends.queue
    queue.claim("dead-worker", 0.0)  # claimed by a worker that died at once
    asyncio.run(runtime.worker(1).run_until_idle())
    run, job = state(runtime, run_id)
    assert run.status == "failed" and job.status == "dead"
    assert "gave up after 1 attempts; last error: lease expired" in run.error


def test_run_failures_end_the_job_without_retry(runtime: Runtime) -> None:
    define(runtime, "loop", ScriptedModel(lambda m, t: tool_call("calculate", expression="1")),
           ["homeo.examples.tools:calculate"])
    runtime.agents.publish("default", {"loop": AgentSpec(name="loop", model="test:loop",
                                                         tools=["homeo.examples.tools:calculate"],
                                                         max_steps=2)})
    run_id = submit(runtime, "loop")
    asyncio.run(runtime.worker(1).run_until_idle())
    run, job = state(runtime, run_id)
    assert run.status == "failed" and "max_steps" in run.error
    assert job.status == "done" and job.attempts == 1


def test_unknown_model_fails_the_run_with_the_fix(runtime: Runtime) -> None:
    runtime.agents.publish("default", {"ghost": AgentSpec(name="ghost", model="nonsense:x")})
    run_id = submit(runtime, "ghost")
    asyncio.run(runtime.worker(1).run_until_idle())
    run, _ = state(runtime, run_id)
    assert run.status == "failed" and "unknown model 'nonsense:x'" in run.error


def test_cancelled_runs_are_not_executed(runtime: Runtime) -> None:
    model = ScriptedModel(["should not be asked"])
    define(runtime, "echo", model)
    run_id = submit(runtime, "echo")
    cancel_run(runtime.backends, "default", run_id)
    asyncio.run(runtime.worker(1).run_until_idle())
    run, job = state(runtime, run_id)
    assert run.status == "cancelled" and job.status == "done" and model.requests == []


def test_lost_lease_stops_the_run_and_touches_nothing(runtime: Runtime) -> None:
    started = asyncio.Event()

    async def main() -> None:
        class Stalling(ScriptedModel):
            async def request(self, messages, tools=None, **kwargs):
                started.set()
                await asyncio.sleep(30)
                return await super().request(messages, tools, **kwargs)

        define(runtime, "stall", Stalling(["late"]))
        run_id = submit(runtime, "stall")
        worker = runtime.worker(1)
        worker.lease_seconds = 0.3
        job = runtime.backends.queue.claim(worker.worker_id, 0.3)
        processing = asyncio.create_task(worker.process(job))
        await started.wait()
        # Another worker takes the job over (as if this one had stalled past its lease).
        runtime.backends.queue.claim("other", 60, now=job.lease_expires_at + 1)
        await asyncio.wait_for(processing, timeout=10)
        run, job_now = state(runtime, run_id)
        assert run.status == "running" and job_now.lease_owner == "other"

    asyncio.run(main())


def test_stopping_worker_releases_its_run_to_resume_later(runtime: Runtime) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        turns: list[int] = []

        def slow_steps(messages, tools):
            turns.append(len(messages))
            if len(turns) == 2:
                stop.set()  # shutdown requested while the second step runs
            done = sum(m.role == "tool" for m in messages)
            return tool_call("calculate", expression="1+1") if done < 2 else "done"

        define(runtime, "steps", ScriptedModel(slow_steps), ["homeo.examples.tools:calculate"])
        run_id = submit(runtime, "steps")
        await runtime.worker(1).serve(stop)
        run, job = state(runtime, run_id)
        assert run.status == "queued" and job.status == "queued" and job.attempts == 0
        await runtime.worker(1).run_until_idle()
        run, job = state(runtime, run_id)
        assert run.status == "succeeded" and job.status == "done"
        steps = runtime.backends.store.list_steps("default", run_id)
        assert len(steps) == 5 and all(s.attempts == 1 for s in steps)

    asyncio.run(main())


def test_each_claim_is_its_own_lease_even_within_one_worker(runtime: Runtime) -> None:
    define(runtime, "echo", ScriptedModel(["hi"]))
    submit(runtime, "echo")
    worker = runtime.worker(2)
    worker.lease_seconds = 0.0  # the first slot's lease expires at once
    first = asyncio.run(worker.claim())
    worker.lease_seconds = 30.0
    second = asyncio.run(worker.claim())  # another slot of the same worker re-claims it
    assert first.id == second.id and first.lease_owner != second.lease_owner
    queue = runtime.backends.queue
    assert not queue.complete(first.id, first.lease_owner)  # the stale slot cannot settle it
    assert queue.complete(second.id, second.lease_owner)
