"""The worker settles runs and jobs together, on a real SQLite database, with
the queue in it or on a real Redis server."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine.agents import AgentSpec
from homeo.engine.submit import cancel_run, submit_run
from homeo.llm.base import Message, ModelError, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.runtime import Runtime
from homeo.store.models import NewRun

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))  # scriptkit's tools


@pytest.fixture(params=["queue in the database", pytest.param("redis", marks=pytest.mark.redis)])
def runtime(request: pytest.FixtureRequest, tmp_path: Path):
    queue_url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    settings = Settings(data_dir=tmp_path, lease_seconds=5, poll_seconds=0.01,
                        retry_base_seconds=0.0, retry_max_seconds=0.0, queue_url=queue_url)
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
    assert run.error.startswith("gave up: 2 attempts in a row ended without completing a step;"
                                " last error: RetryableError")


def test_expired_leases_past_max_attempts_fail_the_run(runtime: Runtime) -> None:
    define(runtime, "echo", ScriptedModel(["never"]))
    run_id = submit(runtime, "echo", max_attempts=1)
    queue = runtime.backends.queue
    queue.claim("dead-worker", 0.0)  # claimed by a worker that died at once
    runtime.backends.store.claim_run("default", run_id)
    asyncio.run(runtime.worker(1).run_until_idle())
    run, job = state(runtime, run_id)
    assert run.status == "failed" and job.status == "dead"
    assert ("gave up: 1 attempts in a row ended without completing a step;"
            " last error: lease expired") in run.error


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


def test_runs_whose_attempts_progress_are_not_given_up(runtime: Runtime) -> None:
    """Three workers died, but each completed a step: the run is not at fault."""
    define(runtime, "calc", ScriptedModel([tool_call("calculate", expression="6*7"), "42"]),
           ["homeo.examples.tools:calculate"])
    run_id = submit(runtime, "calc", max_attempts=2)
    store, queue = runtime.backends.store, runtime.backends.queue
    for seq in range(2):  # a worker claims, completes one step, and dies
        queue.claim(f"doomed-{seq}", 0.0)
        claim = store.claim_run("default", run_id)
        store.begin_step("default", run_id, seq, "model", "model", None, fence=claim.lease_epoch)
        store.complete_step("default", run_id, seq, "done", {"seq": seq + 1, "next": None,
                            "state": {"messages": [{"role": "user", "content": "go"}]}},
                            fence=claim.lease_epoch)
    queue.claim("doomed-2", 0.0)
    store.claim_run("default", run_id)  # ...and this one died before its first step
    asyncio.run(runtime.worker(1).run_until_idle())
    run, job = state(runtime, run_id)
    assert run.status == "succeeded" and job.status == "done" and job.attempts == 4


def test_an_unexpected_error_fails_the_run_at_once(runtime: Runtime) -> None:
    def buggy(messages, tools):
        return {"not": "a reply"}["missing"]  # a bug: KeyError

    define(runtime, "buggy", ScriptedModel(buggy))
    run_id = submit(runtime, "buggy")
    asyncio.run(runtime.worker(1).run_until_idle())
    run, job = state(runtime, run_id)
    assert run.status == "failed" and job.status == "done" and job.attempts == 1
    assert run.error.startswith("internal error: KeyError: 'missing'")
    [step] = runtime.backends.store.list_steps("default", run_id)
    assert step.status == "failed" and step.error == "KeyError: 'missing'"


def test_a_stale_worker_cannot_finish_a_run_another_worker_claimed(runtime: Runtime) -> None:
    define(runtime, "echo", ScriptedModel(["from the new owner"]))
    run_id = submit(runtime, "echo")
    store, queue = runtime.backends.store, runtime.backends.queue
    stale = store.claim_run("default", run_id)  # a worker that then stalls past its lease
    queue.claim("stalled", 0.0)
    asyncio.run(runtime.worker(1).run_until_idle())
    assert store.get_run("default", run_id).output == "from the new owner"
    # The stalled worker wakes up and tries to finish the run its own way.
    assert store.transition_run("default", run_id, "failed", allowed_from={"running"},
                                error="stale", fence=stale.lease_epoch) is None
    run, job = state(runtime, run_id)
    assert (run.status, run.output, job.status) == ("succeeded", "from the new owner", "done")


def break_claims(runtime: Runtime):
    """Make every claim fail for real, in the queue's own storage; a function
    that mends it, and the start of the error a claim then meets."""
    database = runtime.backends.shared
    if database is not None:
        with database.write() as db:
            db.execute("ALTER TABLE jobs RENAME TO jobs_away")

        def mend() -> None:
            with database.write() as db:
                db.execute("ALTER TABLE jobs_away RENAME TO jobs")

        return mend, "OperationalError: no such table: jobs"
    storage = runtime.backends.queue.storage
    client, key = storage.client, storage.prefix + "priorities"
    levels = client.zrange(key, 0, -1, withscores=True)
    client.delete(key)
    client.set(key, "not a sorted set")  # a claim's ZREVRANGE now fails

    def mend_redis() -> None:
        client.delete(key)
        client.zadd(key, dict(levels))

    return mend_redis, "ResponseError: WRONGTYPE"


def test_a_slot_survives_failed_claims_and_reports_them(runtime: Runtime) -> None:
    define(runtime, "echo", ScriptedModel(["hello"]))
    run_id = submit(runtime, "echo")
    mend, expected = break_claims(runtime)
    worker = runtime.worker(1)
    problems: list[str | None] = []

    async def main() -> None:
        stop = asyncio.Event()
        serving = asyncio.create_task(worker.serve(stop))
        await _until(lambda: worker.claim_error is not None)
        problems.append(worker.health())
        mend()
        await _until(lambda: runtime.backends.store.run_status("default", run_id) == "succeeded")
        problems.append(worker.health())
        stop.set()
        await serving

    asyncio.run(main())
    assert problems[0].startswith(f"cannot claim jobs: {expected}")
    assert problems[1] is None


def blocked_run(runtime: Runtime, name: str) -> tuple[str, str]:
    """Submit a run whose tool step blocks until its gate opens; its id and gate."""
    gate = f"{name}-{runtime.settings.data_dir.name}"
    define(runtime, "blocker", ScriptedModel([tool_call("block", gate=gate), "never"]),
           ["scriptkit:block"])
    return submit(runtime, "blocker"), gate


def serve_while_blocked(runtime: Runtime, worker, run_id: str, then) -> None:
    """Serve until the run's tool step is running, await `then()`, stop the worker."""

    async def main() -> None:
        stop = asyncio.Event()
        serving = asyncio.create_task(worker.serve(stop))
        await _until(lambda: any(step.status == "running" and step.kind == "tool" for step in
                                 runtime.backends.store.list_steps("default", run_id)))
        await then()
        stop.set()
        await serving

    asyncio.run(main())


def test_cancel_stops_the_step_in_flight_and_closes_it(runtime: Runtime) -> None:
    import scriptkit

    run_id, gate = blocked_run(runtime, "cancel")
    worker = runtime.worker(1)
    worker.watch_seconds = 0.05

    async def cancel() -> None:
        cancel_run(runtime.backends, "default", run_id)
        await _until(lambda: gate in scriptkit.stopped)
        await _until(lambda: state(runtime, run_id)[1].status == "done")

    serve_while_blocked(runtime, worker, run_id, cancel)
    run, _ = state(runtime, run_id)
    steps = runtime.backends.store.list_steps("default", run_id)
    assert run.status == "cancelled"
    assert steps[-1].kind == "tool" and steps[-1].status == "cancelled"
    assert steps[-1].finished_at is not None and "cancelled" in steps[-1].error


def test_shutdown_stops_steps_after_the_grace_period_and_requeues_runs(
    runtime: Runtime,
) -> None:
    import scriptkit

    run_id, gate = blocked_run(runtime, "shutdown")
    worker = runtime.worker(1)
    worker.shutdown_grace_seconds = 0.2

    async def nothing() -> None:
        return None

    serve_while_blocked(runtime, worker, run_id, nothing)
    run, job = state(runtime, run_id)
    assert gate in scriptkit.stopped
    assert run.status == "queued" and job.status == "queued" and job.attempts == 0
    tool_step = runtime.backends.store.list_steps("default", run_id)[-1]
    assert tool_step.status == "failed" and "grace period over" in tool_step.error


async def _until(condition, deadline: float = 60.0) -> None:
    """Wait for `condition()` to hold, polling; fail after a generous deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        if loop.time() > end:
            raise AssertionError("condition not met within the deadline")
        await asyncio.sleep(0.02)


def test_a_job_whose_worker_died_waits_to_run_alone(runtime: Runtime) -> None:
    """A suspect (its worker died holding it: it may be what killed it) is not
    run beside other jobs, which it would take down too: its slot claims
    nothing more and waits for the jobs in flight to end, or for long enough."""
    import scriptkit
    from homeo.engine.worker import SUSPECT_WAIT_SECONDS

    queue = runtime.backends.queue
    define(runtime, "echo", ScriptedModel(["hi"]))
    suspect_id = submit(runtime, "echo")
    assert queue.claim("dead-worker#1", 2.0) is not None  # lapses in 2 s, its holder gone
    runtime.backends.store.claim_run("default", suspect_id)
    blocker_id, gate = blocked_run(runtime, "suspect")
    worker = runtime.worker(2)
    now = [1_800_000_000.0]
    worker.clock = lambda: now[0]

    async def then() -> None:
        # The other slot takes the suspect once its lease lapses, and holds it.
        await _until(lambda: worker._alone is not None)
        job = state(runtime, suspect_id)[1]
        assert job.lease_expiries == 1 and job.lease_owner.startswith(worker.worker_id)
        # Its slot waits for the blocker (the injected clock has not moved): not run yet.
        assert runtime.backends.store.list_steps("default", suspect_id) == []
        # Held while the blocker runs, until the wait's end.
        now[0] += SUSPECT_WAIT_SECONDS
        await _until(lambda: state(runtime, suspect_id)[0].status == "succeeded")
        assert state(runtime, blocker_id)[0].status == "running"
        scriptkit.release(gate)
        await _until(lambda: state(runtime, blocker_id)[0].status == "succeeded")

    serve_while_blocked(runtime, worker, blocker_id, then)
    run, job = state(runtime, suspect_id)
    assert (run.output, job.status, job.lease_expiries) == ("hi", "done", 1)
    assert worker._alone is None


def test_a_suspect_with_nothing_beside_it_runs_at_once(runtime: Runtime) -> None:
    define(runtime, "echo", ScriptedModel(["hi"]))
    suspect_id = submit(runtime, "echo")
    runtime.backends.queue.claim("dead-worker#1", 0.0)  # its holder died at once
    runtime.backends.store.claim_run("default", suspect_id)

    assert asyncio.run(runtime.worker(2).run_until_idle()) == 1

    run, job = state(runtime, suspect_id)
    assert (run.status, job.status, job.lease_expiries) == ("succeeded", "done", 1)
