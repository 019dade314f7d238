"""Memory backup and restore at scale: how long `homeo memory backup` takes to
write a tenant's collections (documents, chunks, 384-dimension vectors) and
memories, how long a restore's checks and its one transaction take, and the
file's size, on SQLite (and PostgreSQL with --postgres).

Baseline, in the same run: one plain read of the same rows (every document
and chunk with its vector, every memory) with nothing written, the least a
backup must do; and for the restore, adding the same documents again through
`put_document` (how they got there). With --sensitive, the same again for a
tenant marked sensitive (its rows sealed, its backup encrypted), beside the
plain tenant's figures of the same run.

    .venv/bin/python bench/memory_backup.py
    .venv/bin/python bench/memory_backup.py --chunks 5000 --postgres --sensitive
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from _common import POSTGRES_URL, machine, postgres_problem, postgres_schema, table

from homeo.backends import Backends, open_backends
from homeo.crypto import keyfile
from homeo.crypto.tenants import open_cipher
from homeo.memory.agent_memory import NewMemory, open_agent_memory_store
from homeo.memory.backup import backup_tenant, restore_tenant, verified
from homeo.memory.store import EmbeddingModel, NewChunk, NewDocument, open_store
from homeo.memory.vectors import to_bytes

DIMENSIONS = 384
CHUNKS_PER_DOCUMENT = 50
MODEL = EmbeddingModel("random-unit", DIMENSIONS)


def documents(chunks: int, seed: int = 7) -> list[tuple[NewDocument, list[NewChunk]]]:
    rng = np.random.default_rng(seed)
    made = []
    for number in range(chunks // CHUNKS_PER_DOCUMENT):
        pieces = []
        for position in range(CHUNKS_PER_DOCUMENT):
            text = f"document {number} chunk {position} " + "word " * 60
            pieces.append(NewChunk(position, text, 0, len(text), f"{number}-{position}",
                                   to_bytes(rng.standard_normal(DIMENSIONS))))
        body = " ".join(piece.text for piece in pieces)
        made.append((NewDocument(f"doc {number}", None, "text", body, f"d{number}"), pieces))
    return made


def fill(backends: Backends, corpus: list[tuple[NewDocument, list[NewChunk]]],
         memories: int) -> float:
    """Add the corpus and `memories` memories; the seconds the documents took."""
    store = open_store(backends)
    began = time.perf_counter()
    for document, pieces in corpus:
        store.put_document("acme", "kb", document, pieces, MODEL)
    took = time.perf_counter() - began
    agent = open_agent_memory_store(backends)
    rng = np.random.default_rng(3)
    for number in range(memories):
        agent.insert("acme", NewMemory("tenant", f"fact {number} about the fleet", None, 0.5,
                                       None, "random-unit", DIMENSIONS,
                                       to_bytes(rng.standard_normal(DIMENSIONS))))
    return took


def plain_read(backends: Backends) -> float:
    database = backends.database
    began = time.perf_counter()
    with database.snapshot() as db:
        for query in ("SELECT * FROM memory_documents WHERE tenant_id = ?",
                      "SELECT * FROM memory_chunks WHERE tenant_id = ?",
                      "SELECT * FROM agent_memories WHERE tenant_id = ?"):
            cursor = db.execute(database.sql(query), ("acme",))
            while cursor.fetchmany(500):
                pass
    return time.perf_counter() - began


@contextlib.contextmanager
def database(kind: str, folder: Path) -> Iterator[Backends]:
    if kind == "sqlite":
        backends = open_backends(f"sqlite:///{folder / 'bench.db'}")
        try:
            yield backends
        finally:
            backends.close()
        return
    with postgres_schema(POSTGRES_URL) as url:
        backends = open_backends(url)
        try:
            yield backends
        finally:
            backends.close()


def measure(kind: str, chunks: int, memories: int,
            sensitive: bool = False) -> list[list[str]]:
    corpus = documents(chunks)
    with tempfile.TemporaryDirectory() as folder, database(kind, Path(folder)) as backends:
        if sensitive:
            keyfile.new_key_file(Path(folder) / "bench.keys")
            cipher = open_cipher(Path(folder) / "bench.keys", backends.store)
            assert cipher is not None
            cipher.set_sensitive("acme", True)
            kind = f"{kind}, sensitive"
        adding = fill(backends, corpus, memories)
        read = plain_read(backends)
        path = Path(folder) / "acme.tar"
        began = time.perf_counter()
        summary = backup_tenant(backends, "acme", path)
        writing = time.perf_counter() - began
        began = time.perf_counter()
        with verified(path, runs=backends.store):
            checking = time.perf_counter() - began
        began = time.perf_counter()
        restore_tenant(backends, path, "acme")
        restoring = time.perf_counter() - began
    size = summary.bytes / 1024 / 1024
    return [
        [kind, "plain read of the rows (baseline)", f"{read:.2f}", ""],
        [kind, "backup (read, hash, tar)", f"{writing:.2f}", f"{size:.1f} MiB"],
        [kind, "restore's checks alone", f"{checking:.2f}", ""],
        [kind, "restore (checks + one transaction)", f"{restoring:.2f}", ""],
        [kind, "put_document of the same documents (baseline)", f"{adding:.2f}", ""],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--memories", type=int, default=2_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--sensitive", action="store_true",
                        help="also measure a tenant marked sensitive (encrypted backup)")
    args = parser.parse_args()
    print(machine())
    print(f"{args.chunks} chunks ({DIMENSIONS} dims, {CHUNKS_PER_DOCUMENT} a document),"
          f" {args.memories} memories")
    kinds = ["sqlite"]
    if args.postgres:
        problem = postgres_problem(POSTGRES_URL)
        if problem:
            print(f"skipping PostgreSQL: {problem}")
        else:
            kinds.append("postgres")
    rows = []
    for kind in kinds:
        rows += measure(kind, args.chunks, args.memories)
        if args.sensitive:
            rows += measure(kind, args.chunks, args.memories, sensitive=True)
    print(table(["database", "what", "seconds", "size"], rows))


if __name__ == "__main__":
    main()
