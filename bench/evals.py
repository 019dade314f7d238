"""Evaluations per second here and on a local Ray instance.

A suite of N cases of a scripted agent (one model step, no tool, no model
time, so the figures are homeo's own overhead), each measurement on a fresh
SQLite file, all in one run:

  baseline   the same N inputs as bare runs: submitted and served by one
             worker pool in this process until they end; no scoring, no results
  here       `homeo eval run` without --ray (evolve/evals.py): submit, serve
             with the same pool, score every run, store the results
  ray        `homeo eval run --ray local` (evolve/on_ray.py): the same, but the
             runs are worked by Ray tasks; Ray's start is timed apart

    .venv/bin/python bench/evals.py
    .venv/bin/python bench/evals.py --cases 500 --concurrency 4 --no-ray
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
AGENT = "bench-echo"


def echo(messages, tools):  # noqa: ANN001, ANN201 (a scripted model function)
    return "echo " + next(m.content for m in messages if m.role == "user")


def settings_for(folder: Path, concurrency: int):  # noqa: ANN201 (Settings)
    from homeo.config import Settings

    agents = folder / "agents"
    agents.mkdir(parents=True)
    (agents / f"{AGENT}.yaml").write_text(
        f"name: {AGENT}\ndescription: echoes its task\nmodel: scripted:evals:echo\n"
        "tools: []\nmax_steps: 2\n")
    return Settings(data_dir=folder / "data", agents_dir=agents, workers=concurrency,
                    poll_seconds=0.005)


def suite(count: int):  # noqa: ANN201 (Suite)
    from homeo.evolve.evals import Case, Expect, Suite

    return Suite(name="bench", cases=[
        Case(id=f"c{i}", input=f"n{i}", expect=Expect(contains=[f"n{i}"], regex=r"^echo "))
        for i in range(count)])


def opened(settings):  # noqa: ANN001, ANN201 (Runtime, the agent's version)
    from homeo.runtime import Runtime

    runtime = Runtime.open(settings)
    runtime.publish_agents()
    return runtime, runtime.backends.store.get_agent(settings.default_tenant, AGENT).version


async def baseline(folder: Path, count: int, concurrency: int) -> float:
    from homeo.engine.submit import submit_run
    from homeo.evolve.evals import serve_until_ended
    from homeo.store.models import NewRun

    runtime, _ = opened(settings_for(folder, concurrency))
    tenant = runtime.settings.default_tenant
    try:
        began = time.perf_counter()
        ids = [submit_run(runtime.backends, NewRun(tenant_id=tenant, agent=AGENT,
                                                   input=case.input))[0].id
               for case in suite(count).cases]
        await serve_until_ended(runtime.backends, runtime.worker(), tenant, ids, 0.005)
        return time.perf_counter() - began
    finally:
        await runtime.aclose()


async def here(folder: Path, count: int, concurrency: int) -> float:
    from homeo.evolve.evals import run_suite

    runtime, version = opened(settings_for(folder, concurrency))
    try:
        began = time.perf_counter()
        report = await run_suite(runtime.backends, suite(count),
                                 tenant_id=runtime.settings.default_tenant, agent=AGENT,
                                 version=version, worker=runtime.worker(),
                                 models=runtime.models.get, poll_seconds=0.005)
        elapsed = time.perf_counter() - began
    finally:
        await runtime.aclose()
    assert report.score.value == 1.0, report.score
    return elapsed


def on_ray(folder: Path, count: int, concurrency: int) -> tuple[float, float]:
    """Ray's start, and the evaluation."""
    from homeo.batch.on_ray import LOCAL, connect
    from homeo.evolve.evals import run_suite
    from homeo.evolve.on_ray import served_on_ray

    settings = settings_for(folder, concurrency)
    runtime, version = opened(settings)
    # Ray's workers import this file as `evals` (the agent's model): put it on their path.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH),
                                                             os.environ.get("PYTHONPATH")]))
    began = time.perf_counter()
    ray = connect(LOCAL)
    try:
        up = time.perf_counter() - began
        began = time.perf_counter()
        report = asyncio.run(run_suite(
            runtime.backends, suite(count), tenant_id=settings.default_tenant, agent=AGENT,
            version=version, serve=served_on_ray(ray, settings, settings.default_tenant),
            models=runtime.models.get))
        elapsed = time.perf_counter() - began
    finally:
        ray.shutdown()
        asyncio.run(runtime.aclose())
    assert report.score.value == 1.0, report.score
    return up, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200, help="cases per measurement")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="runs at once per worker pool (HOMEO_WORKERS)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray measurement")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(BENCH))
    from _common import machine, table

    from homeo.observe import logs

    logs.configure("warning", False)
    print(machine())
    count = args.cases
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("baseline: bare runs, no scoring", count,
                 asyncio.run(baseline(Path(tmp, "base"), count, args.concurrency)), ""),
                ("eval run here (run + score + store)", count,
                 asyncio.run(here(Path(tmp, "here"), count, args.concurrency)), "")]
        if not args.no_ray:
            up, elapsed = on_ray(Path(tmp, "ray"), count, args.concurrency)
            rows.append(("eval run on Ray (local)", count, elapsed, f"Ray start {up:.1f} s"))
    print(table(["", "cases", "seconds", "cases/s", "note"],
                [(name, n, f"{s:.2f}", f"{n / s:.1f}", note) for name, n, s, note in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
