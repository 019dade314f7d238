"""Submit a slice of a batch's lines and work the queue until their runs end.

Used in process by `homeo batch run` and inside each Ray task: the runs are
executed by this process's worker pool (as `homeo run` does), so a batch needs
no `homeo worker` running; workers that do run share the work through the
queue. Each line's run is submitted with its idempotency key, so driving a
slice again (after a crash, or a Ray retry) finds the runs it made before and
only waits for those that have not ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from homeo.engine.batch import (
    BatchLine,
    LineRejected,
    has_ended,
    rejected_row,
    result_row,
    submit_line,
)
from homeo.runtime import Runtime

Row = dict[str, Any]
POLL_SECONDS = 0.2


async def drive(
    runtime: Runtime,
    agent: str,
    batch_id: str,
    lines: Sequence[BatchLine],
    *,
    concurrency: int | None = None,
    on_row: Callable[[Row], None] = lambda row: None,
    poll_seconds: float = POLL_SECONDS,
) -> list[Row]:
    """The result row of every line, in the order their runs ended; `on_row`
    gets each as it comes."""
    store, tenant = runtime.backends.store, runtime.settings.default_tenant
    rows: list[Row] = []

    def report(row: Row) -> None:
        rows.append(row)
        on_row(row)

    pending: dict[str, BatchLine] = {}
    for line in lines:
        try:
            run = await asyncio.to_thread(
                submit_line, runtime.backends, tenant, agent, batch_id, line,
                max_attempts=runtime.settings.max_attempts)
        except LineRejected as error:
            report(rejected_row(line, str(error)))
            continue
        if has_ended(run):
            report(result_row(line, run))
        else:
            pending[run.id] = line
    if not pending:
        return rows
    stop = asyncio.Event()
    serving = asyncio.create_task(runtime.worker(concurrency=concurrency).serve(stop))
    try:
        while pending:
            for run in await asyncio.to_thread(_ended, store, tenant, list(pending)):
                report(result_row(pending.pop(run.id), run))
            if pending:
                await asyncio.wait({serving}, timeout=poll_seconds)
                if serving.done():  # the pool stopped by itself: a bug, say so
                    serving.result()
                    raise RuntimeError("the worker pool stopped before the batch's runs ended")
    finally:
        stop.set()
        await serving
    return rows


def _ended(store, tenant: str, run_ids: list[str]) -> list[Any]:  # noqa: ANN001 (Store)
    """The runs among `run_ids` that have ended (a status read each, then the
    whole run of those that look ended)."""
    ended = []
    for run_id in run_ids:
        if store.run_status(tenant, run_id) in ("queued", "running"):
            continue
        run = store.get_run(tenant, run_id)
        if run is not None and has_ended(run):
            ended.append(run)
    return ended
