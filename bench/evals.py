"""Evaluations per second locally: a suite of N cases run through the queue
with a local worker and scored (`homeo eval run`), beside a baseline measured
in the same run: bare runs of the same inputs, submitted and served until they
end, without scoring or storing results. The agent is scripted (no model time),
so the figures are homeo's own overhead.

    python bench/evals.py [--cases 200] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from homeo.config import Settings
from homeo.engine.agents import AgentSpec
from homeo.engine.submit import submit_run
from homeo.evolve.evals import Case, Expect, Suite, serve_until_ended, run_suite
from homeo.llm.providers.scripted import ScriptedModel
from homeo.runtime import Runtime
from homeo.store.models import NewRun


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runtime = Runtime.open(Settings(data_dir=Path(folder), poll_seconds=0.005))
        runtime.models.add("bench:echo", ScriptedModel(
            lambda messages, tools: f"echo {messages[-1].content}"))
        runtime.agents.publish("default", {"echo": AgentSpec(name="echo", model="bench:echo")})
        version = runtime.backends.store.get_agent("default", "echo").version
        suite = Suite(name="bench", cases=[
            Case(id=f"c{i}", input=f"n{i}", expect=Expect(contains=[f"n{i}"], regex=r"^echo "))
            for i in range(args.cases)])

        async def bare() -> float:
            began = time.perf_counter()
            ids = [submit_run(runtime.backends, NewRun(tenant_id="default", agent="echo",
                                                       input=case.input))[0].id
                   for case in suite.cases]
            await serve_until_ended(runtime.backends, runtime.worker(args.concurrency),
                                     "default", ids, 0.005)
            return time.perf_counter() - began

        async def evaluated() -> float:
            began = time.perf_counter()
            report = await run_suite(runtime.backends, suite, tenant_id="default", agent="echo",
                                     version=version, worker=runtime.worker(args.concurrency),
                                     models=runtime.models.get, poll_seconds=0.005)
            assert report.score.value == 1.0, report.score
            return time.perf_counter() - began

        baseline = asyncio.run(bare())
        measured = asyncio.run(evaluated())
        asyncio.run(runtime.aclose())
    n = args.cases
    print(f"{n} cases, {args.concurrency} slots, SQLite")
    print(f"evaluations (run + score + store): {n / measured:8.1f} /s  ({measured:.2f} s)")
    print(f"baseline: bare runs, no scoring:   {n / baseline:8.1f} /s  ({baseline:.2f} s)")


if __name__ == "__main__":
    main()
