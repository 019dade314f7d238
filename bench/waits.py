"""What a waiting run costs, and how soon it goes on once a person approves.

On a SQLite file, a worker (one process, `HOMEO_POLL_SECONDS` as given) serves
an agent whose one tool call needs approval:

  idle cost    the worker's CPU time per second while it serves an empty
               queue (the baseline), then while N runs wait for approval in
               the same database; and the jobs queued or leased meanwhile
               (a waiting run holds none)
  resume       from `answer()` (what POST /v1/runs/{id}/approve does) to the
               approved tool's step starting on the worker, P50 and P99;
               the baseline, measured in the same run on the same worker, is a
               new run: from `submit_run` to its first step starting. Each
               approval and submission comes at a random moment while the
               worker is idle, so both include the wait for its next poll.
  size         database bytes per waiting run

    .venv/bin/python bench/waits.py
    .venv/bin/python bench/waits.py --waiting 2000 --resumes 100 --poll 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, table

from homeo.config import Settings
from homeo.engine.agents import AgentSpec
from homeo.engine.react import ApprovalPolicy
from homeo.engine.submit import run_job_key, submit_run
from homeo.engine.waits import answer
from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.observe import logs
from homeo.runtime import Runtime
from homeo.store.models import NewRun
from homeo.tools.registry import tool

TENANT = "default"


@tool(idempotent=True)
def note(text: str) -> str:
    """Write a note.

    Args:
        text: what to note
    """
    return f"noted {text}"


def noter(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    if not any(message.role == "tool" for message in messages):
        return tool_call("note", text=messages[-1].content)
    return "done"


async def until(condition, seconds: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not get there in time")
        await asyncio.sleep(0.001)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(runtime: Runtime, args: argparse.Namespace) -> dict[str, object]:
    store = runtime.backends.store
    # When each step started on the worker, by (run, seq). The runner's events
    # carry no run id, but one run is in flight at a time here: `current`.
    started: dict[tuple[str, int], float] = {}
    current: dict[str, str] = {}

    def emit(event: dict) -> None:
        if event["type"] == "step_started":
            started[(current.get("run", ""), event["seq"])] = time.perf_counter()

    worker = runtime.worker(1, emit=emit)
    queue, rng = runtime.backends.queue, random.Random(7)

    async def settled(run_id: str) -> None:
        """Wait until the worker let the run's job go, then a random while, so
        each submission or approval arrives at a random point of its polling."""
        run = store.get_run(TENANT, run_id)
        await until(lambda: queue.find(TENANT, run_job_key(run)).status == "done")
        await asyncio.sleep(rng.uniform(0, 2 * args.poll))
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    results: dict[str, object] = {}
    try:
        await asyncio.sleep(1.0)  # let it settle
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(args.seconds)
        results["idle_cpu"] = (time.process_time() - cpu) / (time.perf_counter() - wall)

        new_latency, run_ids = [], []
        for index in range(args.waiting):
            began = time.perf_counter()
            run, _ = await asyncio.to_thread(
                submit_run, runtime.backends,
                NewRun(tenant_id=TENANT, agent="noter", input=f"n{index}"))
            current["run"] = run.id
            await until(lambda run=run: store.run_status(TENANT, run.id) == "waiting")
            new_latency.append(started[(run.id, 0)] - began)
            run_ids.append(run.id)
            await settled(run.id)
        results["held"] = sum(
            queue.find(TENANT, run_job_key(run)).status in ("queued", "leased")
            for run in (store.get_run(TENANT, run_id) for run_id in run_ids))
        await asyncio.sleep(1.0)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(args.seconds)
        results["waiting_cpu"] = (time.process_time() - cpu) / (time.perf_counter() - wall)
        results["bytes"] = Path(runtime.settings.data_dir, "homeo.db").stat().st_size

        resume_latency = []
        for run_id in run_ids[: args.resumes]:
            run = store.get_run(TENANT, run_id)
            current["run"] = run_id
            seq = run.checkpoint["seq"]
            began = time.perf_counter()
            await asyncio.to_thread(answer, runtime.backends, run, "approval",
                                    {"approved": True, "comment": ""})
            await until(lambda run_id=run_id, seq=seq: (run_id, seq) in started)
            resume_latency.append(started[(run_id, seq)] - began)
            await until(lambda run_id=run_id: store.run_status(TENANT, run_id) == "succeeded")
            await settled(run_id)
        results["new"] = new_latency[: args.resumes]
        results["resume"] = resume_latency
    finally:
        stop.set()
        await serving
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=1000, help="runs left waiting")
    parser.add_argument("--resumes", type=int, default=50, help="runs approved, one at a time")
    parser.add_argument("--seconds", type=float, default=5.0, help="each idle CPU window")
    parser.add_argument("--poll", type=float, default=0.2, help="HOMEO_POLL_SECONDS")
    args = parser.parse_args(argv)
    logs.configure("warning", False)
    print(f"waiting runs: {args.waiting} waiting, {args.resumes} resumed, worker polls every"
          f" {args.poll:g} s", flush=True)
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="homeo-bench-waits-") as folder:
        runtime = Runtime.open(Settings(data_dir=Path(folder), poll_seconds=args.poll))
        try:
            runtime.models.add("test:noter", ScriptedModel(noter))
            spec = AgentSpec(name="noter", model="test:noter", tools=[f"{__name__}:note"],
                             approval=ApprovalPolicy(tools=["note"]))
            runtime.agents.publish(TENANT, {"noter": spec})
            found = asyncio.run(measure(runtime, args))
        finally:
            asyncio.run(runtime.aclose())
    new, resume = found["new"], found["resume"]
    print()
    print(table(["what", "value"], [
        ["worker CPU, empty queue (baseline)", f"{found['idle_cpu']:.2%} of a core"],
        [f"worker CPU, {args.waiting} runs waiting", f"{found['waiting_cpu']:.2%} of a core"],
        ["jobs queued or leased for waiting runs", str(found["held"])],
        ["database bytes per waiting run", f"{found['bytes'] / args.waiting:,.0f}"],
        ["new run: submit -> first step, P50 / P99 (baseline)",
         f"{statistics.median(new) * 1000:.0f} / {percentile(new, 0.99) * 1000:.0f} ms"],
        ["approval -> approved step, P50 / P99",
         f"{statistics.median(resume) * 1000:.0f} / {percentile(resume, 0.99) * 1000:.0f} ms"],
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
