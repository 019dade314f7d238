"""The usage writer batches direct calls' usage into a real SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from homeo.api.usage import UsageWriter
from homeo.backends import Backends, open_backends
from homeo.llm.base import Usage
from homeo.observe.metrics import Metrics


def tokens(metrics: Metrics, tenant: str) -> float:
    exported = metrics.render().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in exported.splitlines()
               if line.startswith("homeo_llm_tokens_total{") and f'tenant="{tenant}"' in line)


async def until(condition, polls: int = 500) -> None:  # noqa: ANN001
    while not condition() and polls:
        polls -= 1
        await asyncio.sleep(0.01)
    assert condition()


def open_store(tmp_path: Path) -> tuple[Backends, Path]:
    path = tmp_path / "usage.db"
    return open_backends(f"sqlite:///{path}"), path


def test_a_full_batch_is_written_at_once_and_the_rest_on_close(tmp_path: Path) -> None:
    backends, _ = open_store(tmp_path)
    metrics = Metrics()
    writer = UsageWriter(backends.store, metrics, interval=3600, batch=3, clock=lambda: 10.0)
    store = backends.store

    async def main() -> None:
        running = asyncio.create_task(writer.run())
        for n in range(3):
            writer.record("acme", "chat", "fast", Usage(input_tokens=n + 1, output_tokens=1))
        # The batch of 3 is written long before the hour-long interval.
        await until(lambda: store.usage("acme").total_tokens == 1 + 2 + 3 + 3)
        writer.record("acme", "chat", "fast", Usage(input_tokens=4, output_tokens=1))
        writer.record("acme", "chat", "fast", Usage())  # a cached answer: nothing to write
        await asyncio.sleep(0.05)
        assert store.usage("acme").total_tokens == 9  # one record waits for the interval
        await writer.close()
        await running

    asyncio.run(main())
    assert store.usage("acme").total_tokens == 1 + 2 + 3 + 4 + 4
    assert tokens(metrics, "acme") == 14  # the metrics count at once, the zero call too
    backends.close()


def test_a_batch_the_store_refuses_is_kept_and_written_later(tmp_path: Path) -> None:
    backends, path = open_store(tmp_path)
    writer = UsageWriter(backends.store, Metrics(), interval=3600, clock=lambda: 10.0)
    raw = sqlite3.connect(path)
    raw.execute("ALTER TABLE usage_events RENAME TO usage_events_away")
    raw.commit()

    async def main() -> None:
        writer.record("acme", "embeddings", "embedding", Usage(input_tokens=5))
        await writer.flush()  # fails: the table is gone
        raw.execute("ALTER TABLE usage_events_away RENAME TO usage_events")
        raw.commit()
        writer.record("acme", "embeddings", "embedding", Usage(input_tokens=7))
        await writer.flush()

    asyncio.run(main())
    raw.close()
    assert backends.store.usage("acme").input_tokens == 12
    backends.close()
