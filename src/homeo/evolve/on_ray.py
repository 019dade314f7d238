"""An evaluation's runs worked by Ray tasks (`homeo eval run --ray`).

The command submits every case's run here (idempotency keys: the eval id and
the case id) and scores them here; only the work is spread: the run ids are
cut into slices, and each slice is one Ray task that opens a runtime on the
shared database and works the queue until its runs have ended. Ray retries a
task whose worker process dies: the retry waits for the same runs, and a run
the dead process left `running` is claimed again when its lease expires and
resumes after its last completed step. No run is made twice.

Starting or joining Ray, loopback-only when local, is batch/on_ray.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from homeo.batch.on_ray import TASK_RETRIES, slices
from homeo.config import Settings
from homeo.evolve.evals import Serve, serve_until_ended

TASK_NAME = "homeo_eval_slice"
POLL_SECONDS = 0.1


def serve_slice(settings: Settings, tenant_id: str, run_ids: list[str]) -> int:
    """One Ray task: a runtime of its own works the queue until these runs have
    ended; how many they were."""
    from homeo.runtime import Runtime

    async def main() -> None:
        runtime = Runtime.open(settings)
        try:
            await serve_until_ended(runtime.backends, runtime.worker(), tenant_id, run_ids,
                                     POLL_SECONDS)
        finally:
            await runtime.aclose()

    asyncio.run(main())
    return len(run_ids)


def served_on_ray(ray: Any, settings: Settings, tenant_id: str, *,
                  slice_size: int | None = None,
                  on_done: Callable[[int], None] = lambda count: None) -> Serve:
    """Serve: the runs' ids sliced into Ray tasks; `on_done` gets how many
    runs ended each time a task finishes."""
    task = ray.remote(serve_slice).options(max_retries=TASK_RETRIES, retry_exceptions=False,
                                           name=TASK_NAME)

    def work(run_ids: Sequence[str]) -> None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        pending = [task.remote(settings, tenant_id, part)
                   for part in slices(run_ids, cpus, slice_size)]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            on_done(ray.get(done[0]))

    async def serve(run_ids: list[str]) -> None:
        await asyncio.to_thread(work, run_ids)

    return serve
