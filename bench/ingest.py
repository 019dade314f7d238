"""What durable ingestion costs the store: one document of N chunks indexed
by the `ingest` job's path (homeo.memory.ingest: each batch's vectors staged
with its progress in a write of their own, then one transaction that writes
the document), against the baseline of `Knowledge.add` in the same run (all
vectors in memory, one transaction), on SQLite and on PostgreSQL.

The embedding model here is a seeded stand-in that returns 384 random floats
per text at once, so the figures are the store's work alone; with minilm
(100 to 160 texts/s here, bench/embeddings.py) embedding dominates either way.

    .venv/bin/python bench/ingest.py
    .venv/bin/python bench/ingest.py --chunks 1000 --batches 64 8
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import POSTGRES_URL, machine, postgres_problem, table, postgres_schema

from homeo.backends import open_backends
from homeo.engine.ingest import submit_ingestion
from homeo.llm.base import Embeddings, Message, Model, ModelError, ModelResponse, ToolSpec
from homeo.memory.chunking import ChunkPolicy
from homeo.memory.embedder import Embedder
from homeo.memory.extract import from_text
from homeo.memory.ingest import index_ingestion
from homeo.memory.knowledge import Knowledge
from homeo.memory.store import open_store
from homeo.queue.base import RetryPolicy

DIMENSIONS = 384


class RandomVectors(Model):
    name = "random-384"

    def __init__(self) -> None:
        self.rng = np.random.default_rng(7)

    async def request(self, messages: list[Message], tools: list[ToolSpec] | None = None, *,
                      max_tokens: int | None = None, temperature: float | None = None,
                      json_schema: dict[str, Any] | None = None) -> ModelResponse:
        raise ModelError("embeddings only")

    async def embed(self, texts: list[str]) -> Embeddings:
        return Embeddings(vectors=self.rng.standard_normal((len(texts), DIMENSIONS)).tolist(),
                          model=self.name)


def document(chunks: int, run: int) -> str:
    # One paragraph per chunk (ChunkPolicy(100, 0)), each unique so no vector is reused.
    return "\n\n".join(f"Run {run} paragraph {n}: the keeper logged wind, tide and a lamp"
                       f" check, entry {n * 7919 % 100_003}." for n in range(chunks))


def measure(url: str, chunks: int, batches: list[int]) -> list[list[object]]:
    backends = open_backends(url, RetryPolicy())
    policy = ChunkPolicy(100, 0)
    rows: list[list[object]] = []
    try:
        store = open_store(backends)
        knowledge = Knowledge(store, Embedder(RandomVectors(), "random"), policy)
        start = time.perf_counter()
        added = asyncio.run(knowledge.add("bench", "inline", from_text(document(chunks, 0),
                                                                        "text")))
        baseline = time.perf_counter() - start
        assert added.chunks == chunks, added.chunks
        rows.append(["Knowledge.add (baseline)", "-", f"{baseline:.3f}",
                     f"{chunks / baseline:,.0f}", "1.00x"])
        for number, batch in enumerate(batches, start=1):
            embedder = Embedder(RandomVectors(), "random", batch_size=batch)
            text = from_text(document(chunks, number), "text")
            start = time.perf_counter()
            ingestion, _ = submit_ingestion(backends, store, "bench", f"queued{batch}", text)
            with_text = store.get_ingestion("bench", ingestion.id, with_text=True)
            made = asyncio.run(index_ingestion(store, embedder, policy, with_text, "bench"))
            seconds = time.perf_counter() - start
            assert made.chunks == chunks, made.chunks
            rows.append([f"ingest job path, batch {batch}", str(-(-chunks // batch)),
                         f"{seconds:.3f}", f"{chunks / seconds:,.0f}",
                         f"{seconds / baseline:.2f}x"])
    finally:
        backends.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 8])
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    options = parser.parse_args()
    print(machine())
    headers = ["path", "staged writes", "seconds", "chunks/s", "vs baseline"]
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'homeo.db'}"
        print(f"\nSQLite, one document of {options.chunks} chunks")
        print(table(headers, measure(url, options.chunks, options.batches)))
    problem = postgres_problem(options.postgres_url)
    if problem is not None:
        print(f"\nPostgreSQL skipped: {problem}")
        return
    with postgres_schema(options.postgres_url) as url:
        print(f"\nPostgreSQL, one document of {options.chunks} chunks")
        print(table(headers, measure(url, options.chunks, options.batches)))


if __name__ == "__main__":
    main()
