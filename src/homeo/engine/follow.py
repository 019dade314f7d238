"""Following a run: its steps and its status as they change, read from the store.

What `homeo run` and `homeo runs events` show. It reads only the store, so it
follows a run that any worker sharing the database is running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from homeo.engine.submit import RunNotFound
from homeo.store.base import Store, read_async
from homeo.store.models import Run, Step

FOLLOW_POLL_SECONDS = 0.2


async def follow_run(
    store: Store,
    tenant_id: str,
    run_id: str,
    *,
    poll_seconds: float = FOLLOW_POLL_SECONDS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    until: Callable[[], bool] = lambda: False,
) -> AsyncIterator[Step | Run]:
    """Yield each step when it begins or changes (status or attempt), and the
    run when its status changes, in that order on each look; the last item is
    the run once it is final. Raises RunNotFound if there is no such run.

    `until()` true ends the following early, after one more look: what was
    written before it turned true is still yielded (`homeo run` follows until
    its own worker has stopped)."""
    seen_steps: dict[int, tuple[str, int]] = {}
    seen_status: str | None = None
    settled = -1  # steps up to here succeeded, so they never change again
    while True:
        last_look = until()
        # The run before its steps: once the run is final, every step is written.
        run = await read_async(store, store.get_run, tenant_id, run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r} for tenant {tenant_id!r}")
        steps = await read_async(store, store.list_steps, tenant_id, run_id, after_seq=settled)
        for step in steps:
            if seen_steps.get(step.seq) != (step.status, step.attempts):
                seen_steps[step.seq] = (step.status, step.attempts)
                yield step
        for step in steps:
            if step.status != "succeeded" or step.seq != settled + 1:
                break
            settled = step.seq
        if run.status != seen_status:
            seen_status = run.status
            yield run
        if run.is_final or last_look:
            return
        await sleep(poll_seconds)
