"""What a tenant's direct model calls used (/v1/chat/completions,
/v1/embeddings): counted in the metrics at once, and written to the store in
batches, one transaction every `interval` seconds or as soon as `batch`
records wait. A write per call would cost each call a thread hop and a
commit (about a fifth of the call's CPU in bench/router_overhead.py).

So tenant budgets see a call's tokens up to `interval` late, and a crash loses
at most that much accounting, never a run or a job. A batch the store refuses
is kept and tried again with the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from homeo.llm.base import Usage
from homeo.observe import logs
from homeo.observe.metrics import Metrics
from homeo.store.base import Store
from homeo.store.models import UsageEvent

log = logs.get_logger("homeo.api.usage")

MAX_PENDING = 100_000  # while the store is down; older records are dropped past it


class UsageWriter:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        interval: float = 0.5,
        batch: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.interval = interval
        self.batch = batch
        self.clock = clock
        self._pending: list[UsageEvent] = []
        self._wake = asyncio.Event()
        self._closing = False

    def record(self, tenant_id: str, source: str, model: str, usage: Usage) -> None:
        """Count one call's usage; called on the event loop, never blocks."""
        self.metrics.count_usage(tenant_id, model, **usage.model_dump())
        if not (usage.total_tokens or usage.cost_usd):
            return  # a cached answer used nothing
        self._pending.append(UsageEvent(
            tenant_id=tenant_id, source=source, model=model, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cost_usd=usage.cost_usd, at=self.clock(),
        ))
        if len(self._pending) >= self.batch:
            self._wake.set()

    async def run(self) -> None:
        """Write batches until `close`, then write what is left."""
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.flush()
        await self.flush()

    async def close(self) -> None:
        self._closing = True
        self._wake.set()

    async def flush(self) -> None:
        events, self._pending = self._pending, []
        if not events:
            return
        try:
            await asyncio.to_thread(self.store.record_usage, events)
        except Exception as error:  # the store is down: keep the records for the next try
            self._pending = (events + self._pending)[-MAX_PENDING:]
            log.error("usage not recorded yet; will try again", records=len(events),
                      error=str(error))
