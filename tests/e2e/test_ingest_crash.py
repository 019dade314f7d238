"""SIGKILL a `homeo worker` process in the middle of embedding a large
document, on SQLite and on PostgreSQL: search never finds a chunk of the
half-indexed document, and the next worker (claiming the job once its lease
lapses) completes it with exactly the right chunks.

The document is large and the embedding batches small (240 chunks, 2 per
batch, progress written after each), so the kill lands mid-batch: the test
waits until progress shows more than none and less than all, freezes the
worker (SIGSTOP), checks again, and only then kills it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine.ingest import submit_ingestion
from homeo.memory.chunking import ChunkPolicy, chunk
from homeo.memory.embedder import Embedder
from homeo.memory.extract import from_text
from homeo.memory.knowledge import Knowledge
from homeo.memory.store import Ingestion, KnowledgeStore, open_store
from homeo.runtime import Runtime

sys.path.insert(0, str(Path(__file__).parent.parent / "support"))
from hashembed import HashingEmbedder  # noqa: E402

pytestmark = pytest.mark.slow  # worker processes load the embedding model

HOMEO = Path(sys.executable).parent / "homeo"
DEADLINE_SECONDS = 240.0
TENANT = "default"
CHUNK_CHARS = 100
EMBED_BATCH = 2
BIG = "\n\n".join(f"Entry {n}: the lighthouse keeper wound the clockwork lamp and noted"
                  f" {'fog' if n % 3 else 'gales'} offshore." for n in range(240))


def wait_until(condition, what: str) -> None:
    end = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def _stopped(pid: int) -> bool:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state in ("T", "t")


class Workers:
    def __init__(self, tmp: Path, url: str) -> None:
        agents = tmp / "agents"
        agents.mkdir()
        self.env = {**os.environ, "HOMEO_DATA_DIR": str(tmp / "data"),
                    "HOMEO_DATABASE_URL": url, "HOMEO_QUEUE_URL": "",
                    "HOMEO_AGENTS_DIR": str(agents), "HOMEO_LEASE_SECONDS": "1",
                    "HOMEO_POLL_SECONDS": "0.05", "HOMEO_WORKERS": "1",
                    "HOMEO_MEMORY_EMBED_BATCH": str(EMBED_BATCH),
                    "HOMEO_MEMORY_CHUNK_CHARS": str(CHUNK_CHARS),
                    "HOMEO_MEMORY_CHUNK_OVERLAP": "0", "HOMEO_LOG_LEVEL": "warning"}
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen([str(HOMEO), "worker"], env=self.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.started.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.started:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()


def alive(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is not None:
        raise AssertionError(f"the worker exited ({worker.returncode}):"
                             f" {worker.stderr.read().decode()[-2000:]}")


def test_a_kill_mid_batch_never_leaves_a_half_indexed_document_searchable(
        tmp_path: Path, backend_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=backend_url)
    runtime = Runtime.open(settings)
    workers = Workers(tmp_path, backend_url)
    store: KnowledgeStore = open_store(runtime.backends)
    # Text search embeds nothing: the hashing model is here only to make a Knowledge.
    knowledge = Knowledge(store, Embedder(HashingEmbedder(), "hash"))
    try:
        small, _ = submit_ingestion(runtime.backends, store, TENANT, "log",
                                    from_text("Gulls cry at dawn.", "text"))
        big, _ = submit_ingestion(runtime.backends, store, TENANT, "log",
                                  from_text(BIG, "text"), source="log.txt")
        expected = len(chunk(BIG, ChunkPolicy(CHUNK_CHARS, 0), markdown=False))
        assert expected >= 200

        def now() -> Ingestion:
            found = store.get_ingestion(TENANT, big.id)
            assert found is not None
            return found

        def lighthouse_hits() -> list[str]:
            if store.get_collection(TENANT, "log") is None:
                return []
            hits = asyncio.run(knowledge.search(TENANT, "log", "lighthouse clockwork", 10,
                                                "text"))
            return [hit.chunk.document_id for hit in hits]

        def never_half_searchable() -> Ingestion:
            """The ingestion as read before a search; a search that finds the
            document must have run after the ingestion finished (read again)."""
            before = now()
            if lighthouse_hits() and before.status != "done":
                assert now().status == "done", "a half-indexed document was searchable"
            return before

        def embedding_under_way() -> bool:
            alive(first)
            return never_half_searchable().chunks_done > 0

        first = workers.start()
        wait_until(embedding_under_way, "the first worker to embed a batch")
        first.send_signal(signal.SIGSTOP)
        wait_until(lambda: _stopped(first.pid), "the worker to stop")
        halfway = now()
        assert halfway.status == "indexing" and halfway.chunks_total == expected
        assert 0 < halfway.chunks_done < expected, (
            f"{halfway.chunks_done} of {expected} chunks embedded when the worker was frozen:"
            " make the document larger")
        first.kill()
        first.wait()
        assert first.returncode == -signal.SIGKILL

        assert lighthouse_hits() == []
        # The staged batches survive. One more may land: on PostgreSQL a commit the
        # worker sent just before it froze can reach the server after we read.
        after = now()
        assert after.status == "indexing"
        assert halfway.chunks_done <= after.chunks_done <= halfway.chunks_done + EMBED_BATCH
        assert store.get_ingestion(TENANT, small.id).status == "done"
        collection = store.get_collection(TENANT, "log")
        assert (collection.documents, collection.chunks) == (1, 1)  # the small one only
        assert len(store.vector_table(TENANT, "log").ids) == 1

        second = workers.start()

        def finished() -> bool:
            alive(second)
            return never_half_searchable().status == "done"

        wait_until(finished, "the next worker to finish the ingestion")
        done = now()
        assert done.chunks_done == done.chunks_total == expected and done.error is None
        document = store.get_document(TENANT, "log", done.document_id)
        assert document is not None and document.chunks == expected and document.text == BIG
        collection = store.get_collection(TENANT, "log")
        assert (collection.documents, collection.chunks) == (2, expected + 1)
        table = store.vector_table(TENANT, "log")
        positions = [hit.position for hit in store.get_chunks(TENANT, "log", table.ids)
                     if hit.document_id == document.id]
        assert sorted(positions) == list(range(expected))  # each chunk once
        assert set(lighthouse_hits()) == {document.id}
        job = runtime.backends.queue.find(TENANT, f"ingest:{big.id}:0")
        assert job.status == "done" and job.attempts == 2 and job.lease_expiries == 1
    finally:
        workers.close()
        runtime.backends.close()
