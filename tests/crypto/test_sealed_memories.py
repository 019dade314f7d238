"""A sensitive tenant's agent memories on SQLite and PostgreSQL: the text is
sealed in its row, the full-text index keeps terms only (a contentless FTS5
table; a tsvector), so search, listing, deletion and pruning still work and
the raw database holds no planted sentence. Without the key, reads fail
naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from homeo.backends import Backends, open_backends
from homeo.crypto import keyfile
from homeo.crypto.tenants import open_cipher
from homeo.memory.agent_memory import NewMemory, open_agent_memory_store
from homeo.memory.store import EmbeddingModel, NewChunk, NewDocument, NewIngestion, open_store
from homeo.memory.vectors import to_bytes
from homeo.store.sealed import SealedDataError
from tests.crypto.test_sealed_store import raw_text

PLANT = "the vault code is PLANTED-4471-acme"
OTHER = "the lobby code is PLANTED-9902-globex"
MODEL = EmbeddingModel("test-model", 2)
VECTOR = b"\x00\x00\x80\x3f\x00\x00\x00\x00"


def memory(text: str) -> NewMemory:
    vector = np.zeros(4, dtype=np.float32)
    vector[0] = 1.0
    return NewMemory("agent:a", text, None, 0.5, None, "m", 4, to_bytes(vector))


def memory_rows(backends: Backends, url: str, *tables: str) -> str:
    """The raw SQLite file, or the tables' raw PostgreSQL rows."""
    if url.startswith("sqlite"):
        return raw_text(backends, url)
    with backends.database.read() as db:  # type: ignore[union-attr]
        return "\n".join(r["t"] for table in tables or ("agent_memories",) for r in db.execute(
            f"SELECT row_to_json(x)::text AS t FROM {table} x"))


def test_a_sensitive_tenants_memories_are_sealed_and_still_searchable(
        backends: Backends, tmp_path: Path) -> None:
    keyfile.new_key_file(tmp_path / "k.keys")
    cipher = open_cipher(tmp_path / "k.keys", backends.store)
    assert cipher is not None
    data_key = cipher.set_sensitive("acme", True).data_key_id
    store = open_agent_memory_store(backends)
    sealed = store.insert("acme", memory(PLANT), now=1.0)
    plain = store.insert("globex", memory(OTHER), now=1.0)
    assert sealed.text == PLANT and store.get("acme", sealed.id).text == PLANT
    assert [m.text for m in store.list_memories("acme")] == [PLANT]
    assert store.live("acme", None, now=2.0).texts == [PLANT]
    assert store.text_search("acme", None, ["vault"], 5, now=2.0)[0][0] == sealed.id
    raw = memory_rows(backends, backends.url)
    assert OTHER in raw and PLANT not in raw and f"homeo:enc:v1:{data_key}:" in raw

    # Deleting needs the plain text (a contentless index forgets only what it is told).
    assert store.delete("acme", sealed.id)
    assert store.text_search("acme", None, ["vault"], 5, now=2.0) == []
    again = store.insert("acme", memory(PLANT), now=1.0)
    assert store.prune(floor=0.9, half_life=1.0, superseded_grace=0.0, now=100.0).total == 2
    assert store.get("acme", again.id) is None and store.get("globex", plain.id) is None
    assert store.text_search("acme", None, ["vault"], 5, now=2.0) == []


def test_without_the_key_a_sealed_memory_fails_naming_it(
        backend_url: str, tmp_path: Path) -> None:
    keyfile.new_key_file(tmp_path / "k.keys")
    keyed, bare = open_backends(backend_url), open_backends(backend_url)
    try:
        cipher = open_cipher(tmp_path / "k.keys", keyed.store)
        assert cipher is not None
        data_key = cipher.set_sensitive("acme", True).data_key_id
        made = open_agent_memory_store(keyed).insert("acme", memory(PLANT), now=1.0)
        with pytest.raises(SealedDataError, match=str(data_key)):
            open_agent_memory_store(bare).get("acme", made.id)
        with pytest.raises(SealedDataError, match="HOMEO_ENCRYPTION_KEY_FILE"):
            open_agent_memory_store(bare).insert("acme", memory(PLANT), now=1.0)
    finally:
        keyed.close()
        bare.close()


def test_a_sensitive_tenants_documents_are_sealed_and_still_searchable(
        backends: Backends, tmp_path: Path) -> None:
    keyfile.new_key_file(tmp_path / "k.keys")
    cipher = open_cipher(tmp_path / "k.keys", backends.store)
    assert cipher is not None
    data_key = cipher.set_sensitive("acme", True).data_key_id
    store = open_store(backends)
    texts = [PLANT, "an unrelated second chunk about kettles"]
    made = store.put_document("acme", "kb", NewDocument("t", "s", "text", " ".join(texts), "h"),
                              [NewChunk(i, t, 0, len(t), f"h{i}", VECTOR)
                               for i, t in enumerate(texts)], MODEL)
    store.put_document("globex", "kb", NewDocument("t", "s", "text", OTHER, "h"),
                       [NewChunk(0, OTHER, 0, len(OTHER), "g0", VECTOR)], MODEL)
    assert store.get_document("acme", "kb", made.id).text == " ".join(texts)
    found = store.text_search("acme", "kb", ["vault"], 5)
    assert [h.text for h in store.get_chunks("acme", "kb", [i for i, _ in found])] == [PLANT]
    assert sorted(store.chunk_texts("acme", "kb").values()) == sorted(texts)
    raw = memory_rows(backends, backends.url, "memory_documents", "memory_chunks")
    assert OTHER in raw and PLANT not in raw and f"homeo:enc:v1:{data_key}:" in raw
    # Replacing and deleting need the plain text (a contentless index forgets what it is told).
    store.put_document("acme", "kb", NewDocument("t", "s", "text", "kettles only", "h2"),
                       [NewChunk(0, "kettles only", 0, 12, "h3", VECTOR)], MODEL, replace=made.id)
    assert store.text_search("acme", "kb", ["vault"], 5) == []
    assert len(store.text_search("acme", "kb", ["kettles"], 5)) == 1
    assert store.delete_document("acme", "kb", made.id)
    assert store.text_search("acme", "kb", ["kettles"], 5) == []


def test_a_sensitive_tenants_accepted_ingestion_is_sealed_until_and_after_indexing(
        backends: Backends, tmp_path: Path) -> None:
    # A long upload is stored first and indexed by a job: its text waits in the
    # ingestion's row, which must be sealed like the document it becomes.
    keyfile.new_key_file(tmp_path / "k.keys")
    cipher = open_cipher(tmp_path / "k.keys", backends.store)
    assert cipher is not None
    data_key = cipher.set_sensitive("acme", True).data_key_id
    store = open_store(backends)
    made, created = store.create_ingestion("acme", NewIngestion(
        "kb", "key-1", NewDocument("t", "s", "text", PLANT, "h"), None))
    other, _ = store.create_ingestion("globex", NewIngestion(
        "kb", "key-1", NewDocument("t", "s", "text", OTHER, "h"), None))
    assert created and store.get_ingestion("acme", made.id, with_text=True).text == PLANT
    raw = memory_rows(backends, backends.url, "memory_ingestions")
    assert OTHER in raw and PLANT not in raw and f"homeo:enc:v1:{data_key}:" in raw
    done = store.finish_ingestion("acme", made.id, [NewChunk(0, PLANT, 0, len(PLANT), "h0",
                                                              VECTOR)], MODEL)
    assert store.get_document("acme", "kb", done.id).text == PLANT
    raw = memory_rows(backends, backends.url, "memory_ingestions", "memory_documents",
                      "memory_chunks")
    assert PLANT not in raw
    assert store.get_ingestion("globex", other.id, with_text=True).text == OTHER
