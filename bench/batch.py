"""`homeo batch run`: inputs per second here and on a local Ray instance.

N inputs of a scripted agent (one model step, no tool), each measurement on a
fresh SQLite file, all in one run:

  baseline     the same N runs submitted with `submit_run` and executed by one
               worker pool in this process, the clock stopped when the store
               counts them all succeeded: what the runs cost without a batch
  here         `homeo batch run` without --ray (batch/drive.py): submit with
               idempotency keys, the same worker pool, a result row per input
  ray          `--ray local` (batch/on_ray.py): slices as Ray tasks, each
               opening its own runtime; Ray's start is timed apart
  ray again    the same batch run again on Ray: every run is picked up, none made

    .venv/bin/python bench/batch.py
    .venv/bin/python bench/batch.py --inputs 500 --workers 4
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
    return "echo: " + next(m.content for m in messages if m.role == "user")


def settings_for(folder: Path, workers: int):  # noqa: ANN201 (Settings)
    from homeo.config import Settings

    agents = folder / "agents"
    agents.mkdir(parents=True)
    (agents / f"{AGENT}.yaml").write_text(
        f"name: {AGENT}\ndescription: echoes its task\nmodel: scripted:batch:echo\n"
        "tools: []\nmax_steps: 2\n")
    return Settings(data_dir=folder / "data", agents_dir=agents, workers=workers)


def lines(count: int) -> list:  # list[BatchLine]
    from homeo.engine.batch import BatchLine

    return [BatchLine(number=n + 1, id=f"i{n}", input=f"input {n}") for n in range(count)]


async def baseline(folder: Path, count: int, workers: int) -> float:
    from homeo.engine.submit import submit_run
    from homeo.runtime import Runtime
    from homeo.store.models import NewRun

    runtime = Runtime.open(settings_for(folder, workers))
    runtime.publish_agents()
    tenant = runtime.settings.default_tenant
    try:
        started = time.perf_counter()
        for line in lines(count):
            submit_run(runtime.backends, NewRun(tenant_id=tenant, agent=AGENT, input=line.input))
        stop = asyncio.Event()
        serving = asyncio.create_task(runtime.worker().serve(stop))
        while runtime.backends.store.count_runs(tenant).get("succeeded", 0) < count:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        stop.set()
        await serving
        return elapsed
    finally:
        await runtime.aclose()


async def here(folder: Path, count: int, workers: int) -> float:
    from homeo.batch.drive import drive
    from homeo.runtime import Runtime

    runtime = Runtime.open(settings_for(folder, workers))
    runtime.publish_agents()
    try:
        started = time.perf_counter()
        rows = await drive(runtime, AGENT, "bench", lines(count))
        elapsed = time.perf_counter() - started
    finally:
        await runtime.aclose()
    assert sum(row["status"] == "succeeded" for row in rows) == count, rows[:3]
    return elapsed


def on_ray(folder: Path, count: int, workers: int) -> tuple[float, float, float, int]:
    """Ray's start, the batch, the same batch again, and the runs in the store."""
    from homeo.batch.on_ray import LOCAL, connect, run_on_ray
    from homeo.runtime import Runtime

    settings = settings_for(folder, workers)
    runtime = Runtime.open(settings)
    runtime.publish_agents()
    asyncio.run(runtime.aclose())
    # Ray's workers import this file as `batch` (the agent's model): put it on their path.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH),
                                                             os.environ.get("PYTHONPATH")]))
    started = time.perf_counter()
    ray = connect(LOCAL)
    try:
        up = time.perf_counter() - started
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            rows = list(run_on_ray(ray, settings, AGENT, "bench", lines(count)))
            timings.append(time.perf_counter() - started)
            assert sum(row["status"] == "succeeded" for row in rows) == count, rows[:3]
    finally:
        ray.shutdown()
    runtime = Runtime.open(settings)
    try:
        made = sum(runtime.backends.store.count_runs(settings.default_tenant).values())
    finally:
        asyncio.run(runtime.aclose())
    return up, timings[0], timings[1], made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=200, help="inputs per measurement")
    parser.add_argument("--workers", type=int, default=2,
                        help="concurrent runs per worker pool (HOMEO_WORKERS)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray measurements")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(BENCH))
    from _common import machine, table

    from homeo.observe import logs

    logs.configure("warning", False)
    print(machine())
    count = args.inputs
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("baseline: submit_run + worker pool", count,
                 asyncio.run(baseline(Path(tmp, "base"), count, args.workers)), "")]
        rows.append(("batch here", count, asyncio.run(here(Path(tmp, "here"), count,
                                                           args.workers)), ""))
        if not args.no_ray:
            up, first, again, made = on_ray(Path(tmp, "ray"), count, args.workers)
            rows.append(("batch on Ray (local)", count, first, f"Ray start {up:.1f} s"))
            rows.append(("same batch again on Ray", count, again,
                         f"runs in the store: {made}"))
    print(table(["", "inputs", "seconds", "inputs/s", "note"],
                [(name, n, f"{s:.2f}", f"{n / s:.1f}", note) for name, n, s, note in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
