"""Backup and restore of a tenant's memory, on SQLite and PostgreSQL: a round
trip gives back every collection, document, chunk, vector, full-text entry
and agent memory; a damaged backup is refused before anything changes; a
backup taken while writers go on holds whole documents only; a SQLite backup
restores into PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from homeo.backends import Backends, open_backends
from homeo.memory.agent_memory import NewMemory, open_agent_memory_store
from homeo.memory.backup import (
    CHUNKS,
    MANIFEST,
    BackupInvalid,
    RestoreConflict,
    backup,
    restore,
    verified,
)
from homeo.memory.store import EmbeddingModel, NewChunk, NewDocument, open_store
from homeo.memory.vectors import VectorIndex, to_bytes

MODEL = EmbeddingModel("test-model", 4)
WIDE = EmbeddingModel("wide-model", 8)
DEADLINE = 120.0


def vector(seed: int, dimensions: int = 4) -> bytes:
    return to_bytes(np.random.default_rng(seed).standard_normal(dimensions))


def add_document(backends: Backends, tenant: str, collection: str, words: list[str],
                 model: EmbeddingModel = MODEL, *, seed: int = 0) -> str:
    text = " ".join(words)
    pieces = [NewChunk(i, word, i, i + len(word), f"h-{word}", vector(seed + i,
                                                                      model.dimensions))
              for i, word in enumerate(words)]
    made = open_store(backends).put_document(
        tenant, collection, NewDocument("T " + words[0], f"src/{words[0]}", "text", text,
                                        f"h-{text}"), pieces, model)
    return made.id


def remember(backends: Backends, tenant: str, text: str, *, seed: int = 0,
             expires_at: float | None = None) -> int:
    made = open_agent_memory_store(backends).insert(
        tenant, NewMemory("agent:a", text, None, 0.5, expires_at, "m", 4, vector(seed)),
        now=100.0 + seed)
    return made.id


def populate(backends: Backends, tenant: str) -> None:
    add_document(backends, tenant, "docs", ["kettle boiling", "walrus tusks"], seed=1)
    add_document(backends, tenant, "docs", ["penguin wings"], seed=3)
    add_document(backends, tenant, "wide", ["otter dens", "beaver dams", "heron"], WIDE, seed=5)
    memories = open_agent_memory_store(backends)
    old = remember(backends, tenant, "The release branch is r41", seed=7)
    newer = remember(backends, tenant, "The release branch is r42", seed=8)
    memories.supersede(tenant, [old], by=newer, now=200.0)
    memories.reinforce(tenant, newer, importance=0.9, expires_at=None, now=201.0)
    remember(backends, tenant, "Standups are at noon", seed=9, expires_at=5000.0)


def state(backends: Backends, tenant: str) -> dict[str, Any]:
    """Everything of the tenant's memory that a restore must give back, ids of
    chunks and memories left out (they are numbered anew)."""
    store = open_store(backends)
    collections = {}
    for collection in store.list_collections(tenant):
        documents = {}
        for listed in store.list_documents(tenant, collection.name, limit=10_000):
            document = store.get_document(tenant, collection.name, listed.id)
            assert document is not None
            documents[listed.id] = document.model_dump()
        table = store.vector_table(tenant, collection.name)
        assert table is not None
        hits = {hit.id: hit for hit in store.get_chunks(tenant, collection.name, table.ids)}
        chunks = sorted((hits[i].document_id, hits[i].position, hits[i].text, hits[i].start,
                         hits[i].end, v) for i, v in zip(table.ids, table.vectors, strict=True))
        collections[collection.name] = (collection.model_dump(), documents, chunks)
    memories = open_agent_memory_store(backends)
    rows = memories.list_memories(tenant, superseded=True, limit=10_000)
    by_id = {row.id: row.text for row in rows}
    vectors = memories.live(tenant, None, now=0.0)
    live = dict(zip(vectors.texts, vectors.vectors, strict=True))
    kept = sorted(repr((row.model_dump(exclude={"id", "superseded_by"}),
                        by_id.get(row.superseded_by) if row.superseded_by else None,
                        live.get(row.text))) for row in rows)
    return {"collections": collections, "memories": kept}


def do_restore(backends: Backends, path: Path, tenant: str = "acme", **kwargs: Any) -> Any:
    return restore(open_store(backends), open_agent_memory_store(backends), path, tenant,
                   **kwargs)


def take_backup(backends: Backends, tenant: str, path: Path, **kwargs: Any) -> Any:
    return backup(open_store(backends), open_agent_memory_store(backends), tenant, path,
                  **kwargs)


def test_a_restore_gives_back_everything_backed_up(backends: Backends, tmp_path: Path) -> None:
    populate(backends, "acme")
    populate(backends, "globex")
    before, others = state(backends, "acme"), state(backends, "globex")
    seen: list[tuple[str, int, int]] = []
    summary = take_backup(backends, "acme", tmp_path / "acme.tar",
                          progress=lambda *step: seen.append(step))
    assert summary.counts.model_dump() == {"collections": 2, "documents": 3, "chunks": 6,
                                           "memories": 3}
    assert ("chunks", 6, 6) in seen and ("memories", 3, 3) in seen

    # Change everything: a new document, one deleted, a collection gone, a new memory.
    store = open_store(backends)
    add_document(backends, "acme", "docs", ["zebra stripes"], seed=11)
    doomed = store.list_documents("acme", "docs")[-1]
    store.delete_document("acme", "docs", doomed.id)
    store.delete_collection("acme", "wide")
    remember(backends, "acme", "The office moved to Lyon", seed=12)
    assert state(backends, "acme") != before

    manifest = do_restore(backends, tmp_path / "acme.tar")
    assert manifest.tenant == "acme" and manifest.counts.documents == 3
    assert state(backends, "acme") == before
    assert state(backends, "globex") == others
    # Full text was made again, and the superseded memory stays out of recall.
    found = store.text_search("acme", "docs", ["walrus"], 5)
    assert [hit.text for hit in store.get_chunks("acme", "docs", [i for i, _ in found])] == [
        "walrus tusks"]
    assert store.text_search("acme", "docs", ["zebra"], 5) == []
    memories = open_agent_memory_store(backends)
    assert len(memories.text_search("acme", None, ["release"], 5, now=300.0)) == 1
    assert memories.text_search("acme", None, ["lyon"], 5, now=300.0) == []


def test_an_in_process_index_never_serves_vectors_from_before_a_restore(
        backends: Backends, tmp_path: Path) -> None:
    add_document(backends, "acme", "docs", ["alpha", "beta"], seed=1)
    take_backup(backends, "acme", tmp_path / "b.tar")
    store = open_store(backends)
    index = VectorIndex(ann_min=None, background=False)
    add_document(backends, "acme", "docs", ["gamma"], seed=2)
    version = store.collection_version("acme", "docs")
    assert version is not None
    index.load("acme", "docs", store.vector_table("acme", "docs"))
    assert index.cached("acme", "docs", version) is not None
    do_restore(backends, tmp_path / "b.tar")
    restored = store.collection_version("acme", "docs")
    assert restored is not None and restored != version
    assert index.cached("acme", "docs", restored) is None  # so a search loads the store again
    loaded = index.load("acme", "docs", store.vector_table("acme", "docs"))
    assert loaded is not None and len(loaded.ids) == 2


def _rewrite(source: Path, target: Path, change: Callable[[str, bytes], bytes | None],
             extra: dict[str, bytes] | None = None) -> Path:
    """A copy of the backup with members changed (None: left out) or added."""
    with tarfile.open(source) as old, tarfile.open(target, "w") as new:
        for member in old.getmembers():
            data = old.extractfile(member)
            assert data is not None
            changed = change(member.name, data.read())
            if changed is None:
                continue
            info = tarfile.TarInfo(member.name)
            info.size = len(changed)
            new.addfile(info, io.BytesIO(changed))
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))
    return target


def _flip(name: str) -> Callable[[str, bytes], bytes]:
    def change(member: str, data: bytes) -> bytes:
        if member != name:
            return data
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]
    return change


def _manifest_says(**fields: Any) -> Callable[[str, bytes], bytes]:
    def change(member: str, data: bytes) -> bytes:
        if member != MANIFEST:
            return data
        return json.dumps({**json.loads(data), **fields}).encode()
    return change


def _truncated(source: Path, target: Path) -> Path:
    """Cut after the last file, inside tar's end marker: tarfile alone reads it as whole."""
    with tarfile.open(source) as archive:
        last = archive.getmembers()[-1]
    end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    target.write_bytes(source.read_bytes()[: end + tarfile.BLOCKSIZE])
    return target


def _cut_inside(name: str) -> Callable[[Path, Path], Path]:
    """The archive cut off halfway through the member `name`."""
    def cut(source: Path, target: Path) -> Path:
        with tarfile.open(source) as archive:
            member = archive.getmember(name)
        target.write_bytes(source.read_bytes()[: member.offset_data + member.size // 2])
        return target
    return cut


DAMAGE: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "a flipped byte": (lambda s, t: _rewrite(s, t, _flip(CHUNKS)),
                       "chunks.jsonl does not match its sha256"),
    "a flipped vector byte": (lambda s, t: _rewrite(s, t, _flip("chunk_vectors.f32")),
                              "chunk_vectors.f32 does not match its sha256"),
    "a truncated archive": (_truncated, "bad.tar is truncated"),
    "an archive cut inside a file": (_cut_inside("memory_vectors.f32"),
                                     "memory_vectors.f32 or what follows it is cut short"),
    "a missing file": (lambda s, t: _rewrite(
        s, t, lambda name, data: None if name == "memories.jsonl" else data),
        "memories.jsonl is missing"),
    "an extra file": (lambda s, t: _rewrite(s, t, lambda name, data: data,
                                            {"evil.sh": b"rm -rf /"}),
                      "evil.sh in the backup is not listed"),
    "another format version": (lambda s, t: _rewrite(s, t, _manifest_says(format_version=99)),
                               "format version 99"),
    "a manifest that is not JSON": (lambda s, t: _rewrite(
        s, t, lambda name, data: b"{nope" if name == MANIFEST else data),
        "manifest.json is not valid JSON"),
    "no tar at all": (lambda s, t: (t.write_bytes(b"hello" * 100), t)[1],
                      "not a readable tar file"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_backup_is_refused_and_the_data_stays(
        backends: Backends, tmp_path: Path, damage: str) -> None:
    populate(backends, "acme")
    take_backup(backends, "acme", tmp_path / "good.tar")
    add_document(backends, "acme", "docs", ["zebra stripes"], seed=11)  # differs from the backup
    before = state(backends, "acme")
    make, problem = DAMAGE[damage]
    bad = make(tmp_path / "good.tar", tmp_path / "bad.tar")
    with pytest.raises(BackupInvalid, match=problem):
        do_restore(backends, bad)
    assert state(backends, "acme") == before


def test_half_a_document_is_refused_even_when_the_hashes_fit(tmp_path: Path,
                                                             backends: Backends) -> None:
    add_document(backends, "acme", "docs", ["alpha", "beta"], seed=1)
    take_backup(backends, "acme", tmp_path / "good.tar")
    with tarfile.open(tmp_path / "good.tar") as archive:
        files = {}
        for member in archive.getmembers():
            data = archive.extractfile(member)
            assert data is not None
            files[member.name] = data.read()
    # One chunk and its vector left out; the manifest's counts and hashes made to fit.
    files[CHUNKS] = files[CHUNKS].splitlines(keepends=True)[0]
    files["chunk_vectors.f32"] = files["chunk_vectors.f32"][:16]
    manifest = json.loads(files[MANIFEST])
    manifest["counts"]["chunks"] = manifest["collections"][0]["chunks"] = 1
    for name in (CHUNKS, "chunk_vectors.f32"):
        manifest["files"][name] = {"size": len(files[name]),
                                   "sha256": hashlib.sha256(files[name]).hexdigest()}
    files[MANIFEST] = json.dumps(manifest).encode()
    bad = _rewrite(tmp_path / "good.tar", tmp_path / "bad.tar", lambda name, _: files[name])
    with pytest.raises(BackupInvalid, match="1 chunks of document .*the document has 2"), \
            verified(bad):
        pytest.fail("a backup holding half a document passed its checks")


def test_a_backup_goes_back_only_into_its_own_tenant(backends: Backends, tmp_path: Path) -> None:
    populate(backends, "acme")
    take_backup(backends, "acme", tmp_path / "acme.tar")
    with pytest.raises(RestoreConflict, match="tenant 'acme'"):
        do_restore(backends, tmp_path / "acme.tar", "globex")
    assert open_store(backends).list_collections("globex") == []


def test_a_backup_while_writers_go_on_holds_whole_documents(
        backends: Backends, make_backends: Callable[..., Backends], tmp_path: Path) -> None:
    for n in range(60):  # enough rows that reading them takes a while
        add_document(backends, "acme", "docs", [f"w{n}-{i}" for i in range(20)], seed=n)
    writer_backends = make_backends()
    stop = threading.Event()
    written = [0]
    failures: list[BaseException] = []

    def write() -> None:
        try:
            while not stop.is_set():
                n = written[0]
                add_document(writer_backends, "acme", "docs",
                             [f"new{n}-{i}" for i in range(12)], seed=1000 + n)
                remember(writer_backends, "acme", f"fact number {n} about turtles", seed=n)
                written[0] += 1
        except BaseException as error:  # reported by the test thread
            failures.append(error)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + DEADLINE
        overlapped = 0
        attempt = 0
        while overlapped < 2:
            assert time.monotonic() < deadline, "the writer never wrote while a backup ran"
            assert not failures, failures
            attempt += 1
            started = written[0]
            summary = take_backup(backends, "acme", tmp_path / f"b{attempt}.tar")
            if written[0] > started:  # the writer committed during this backup
                overlapped += 1
                # Every document is whole: restore's checks count each one's chunks.
                with verified(summary.path) as checked:
                    assert checked.manifest.counts.chunks == (
                        60 * 20 + 12 * (checked.manifest.counts.documents - 60))
    finally:
        stop.set()
        thread.join(DEADLINE)
    assert not failures, failures
    fresh = open_backends(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        do_restore(fresh, summary.path)
        store = open_store(fresh)
        for listed in store.list_documents("acme", "docs", limit=10_000):
            table = store.get_document("acme", "docs", listed.id)
            assert table is not None
        [collection] = store.list_collections("acme")
        assert collection.documents == summary.counts.documents
        assert collection.chunks == summary.counts.chunks
    finally:
        fresh.close()


@pytest.mark.postgres
def test_a_sqlite_backup_restores_into_postgresql(tmp_path: Path, postgres_url: str) -> None:
    source = open_backends(f"sqlite:///{tmp_path / 'source.db'}")
    target = open_backends(postgres_url)
    try:
        populate(source, "acme")
        before = state(source, "acme")
        take_backup(source, "acme", tmp_path / "acme.tar")
        populate(target, "acme")  # replaced by the restore
        do_restore(target, tmp_path / "acme.tar")
        assert state(target, "acme") == before
        store = open_store(target)
        assert store.text_search("acme", "docs", ["walrus"], 5) != []
    finally:
        source.close()
        target.close()


def test_a_document_id_another_tenant_holds_is_refused_and_nothing_changes(
        backends: Backends, tmp_path: Path) -> None:
    document_id = add_document(backends, "acme", "docs", ["alpha"], seed=1)
    take_backup(backends, "acme", tmp_path / "acme.tar")
    add_document(backends, "acme", "docs", ["beta"], seed=2)
    add_document(backends, "globex", "theirs", ["gamma"], seed=3)
    # As if globex's document had come, in another database, with the same id.
    database = backends.database
    with database.write() as db:
        theirs = db.execute(database.sql(
            "SELECT id FROM memory_collections WHERE tenant_id = 'globex'")).fetchone()["id"]
        for table in ("memory_documents", "memory_chunks"):
            column = "id" if table == "memory_documents" else "document_id"
            db.execute(database.sql(f"UPDATE {table} SET tenant_id = 'globex',"
                                    f" collection_id = ? WHERE {column} = ?"),
                       (theirs, document_id))
    before = state(backends, "acme")
    with pytest.raises(RestoreConflict, match=f"document id {document_id} .* another tenant"):
        do_restore(backends, tmp_path / "acme.tar")
    assert state(backends, "acme") == before
    assert open_store(backends).text_search("acme", "docs", ["beta"], 5) != []  # rolled back


def test_the_backup_file_is_its_owners_only(backends: Backends, tmp_path: Path) -> None:
    made = take_backup(backends, "acme", tmp_path / "acme.tar")
    assert made.path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("homeo-backup-")] == []
