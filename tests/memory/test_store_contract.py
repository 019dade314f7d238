"""The knowledge store contract: every backend must pass every test here."""

from __future__ import annotations

import numpy as np
import pytest

from homeo.backends import Backends
from homeo.memory.store import (
    DocumentNotFound,
    EmbeddingMismatch,
    EmbeddingModel,
    KnowledgeError,
    KnowledgeStore,
    NewChunk,
    NewDocument,
    NewIngestion,
    StagedVector,
    open_store,
)
from homeo.memory.vectors import to_bytes

MODEL = EmbeddingModel("test-model", 4)


@pytest.fixture
def store(backends: Backends) -> KnowledgeStore:
    return open_store(backends)


def vector(*values: float) -> bytes:
    return to_bytes(np.array(values, dtype=np.float32))


def doc(text: str, source: str | None = None) -> NewDocument:
    return NewDocument(title="T", source=source, format="text", text=text,
                       content_hash=f"h-{text}")


def chunks(*texts: str, model: EmbeddingModel = MODEL) -> list[NewChunk]:
    return [NewChunk(i, text, i * 10, i * 10 + len(text), f"c-{text}",
                     vector(*([float(i + 1)] + [0.0] * (model.dimensions - 1))))
            for i, text in enumerate(texts)]


def test_a_document_is_stored_with_its_chunks(store: KnowledgeStore) -> None:
    made = store.put_document("acme", "docs", doc("alpha beta"), chunks("alpha", "beta"), MODEL,
                              now=100.0)
    assert made.chunks == 2 and made.collection == "docs" and made.created_at == 100.0
    got = store.get_document("acme", "docs", made.id)
    assert got is not None and got.text == "alpha beta" and got.title == "T"
    [collection] = store.list_collections("acme")
    assert (collection.name, collection.documents, collection.chunks) == ("docs", 1, 2)
    assert (collection.model, collection.dimensions) == ("test-model", 4)
    table = store.vector_table("acme", "docs")
    assert table is not None and len(table.ids) == 2 and table.vectors[1] == vector(2, 0, 0, 0)


def test_full_text_search_finds_stemmed_words_and_ranks(store: KnowledgeStore) -> None:
    store.put_document("acme", "docs", doc("x"), chunks(
        "The kettle is boiling water", "Trains run on rails", "Boiled eggs and boiling kettles"),
        MODEL)
    found = store.text_search("acme", "docs", ["boiling", "kettle"], 10)
    texts = {hit.text for hit in store.get_chunks("acme", "docs", [i for i, _ in found])}
    assert texts == {"The kettle is boiling water", "Boiled eggs and boiling kettles"}
    assert found[0][1] >= found[1][1]
    assert store.text_search("acme", "docs", ["zebra"], 10) == []
    # Query syntax in a user's words is read as words, never as operators.
    assert store.text_search("acme", "docs", ['"', "NEAR", "*", "-", "a:b", "x)"], 10) == []


def test_replacing_a_document_replaces_its_chunks_and_full_text(store: KnowledgeStore) -> None:
    made = store.put_document("acme", "docs", doc("old"), chunks("walrus tusks"), MODEL, now=1.0)
    again = store.put_document("acme", "docs", doc("new"), chunks("penguin wings", "ice"), MODEL,
                               replace=made.id, now=2.0)
    assert again.id == made.id and again.created_at == 1.0 and again.updated_at == 2.0
    assert store.text_search("acme", "docs", ["walrus"], 10) == []
    assert len(store.text_search("acme", "docs", ["penguin"], 10)) == 1
    assert store.get_document("acme", "docs", made.id).text == "new"
    with pytest.raises(DocumentNotFound):
        store.put_document("acme", "docs", doc("x"), chunks("x"), MODEL, replace="doc_missing")


def test_deleting_a_document_removes_text_vectors_and_full_text(store: KnowledgeStore) -> None:
    keep = store.put_document("acme", "docs", doc("keep"), chunks("otter dens"), MODEL)
    gone = store.put_document("acme", "docs", doc("gone"), chunks("walrus tusks", "more"), MODEL)
    before = store.collection_version("acme", "docs")
    assert store.delete_document("acme", "docs", gone.id)
    assert not store.delete_document("acme", "docs", gone.id)
    assert store.get_document("acme", "docs", gone.id) is None
    assert store.text_search("acme", "docs", ["walrus"], 10) == []
    table = store.vector_table("acme", "docs")
    assert len(table.ids) == 1 and table.version != before
    assert store.cached_vectors("acme", MODEL, ["c-walrus tusks"]) == {}
    assert [d.id for d in store.list_documents("acme", "docs")] == [keep.id]


def test_deleting_a_collection_removes_everything_in_it(store: KnowledgeStore) -> None:
    store.put_document("acme", "docs", doc("a"), chunks("walrus tusks"), MODEL)
    version = store.collection_version("acme", "docs")
    assert store.delete_collection("acme", "docs")
    assert store.get_collection("acme", "docs") is None
    assert store.text_search("acme", "docs", ["walrus"], 10) == []
    store.put_document("acme", "docs", doc("a"), chunks("otter"), MODEL)
    assert store.collection_version("acme", "docs") != version  # a new collection


def test_tenants_never_see_each_others_knowledge(store: KnowledgeStore) -> None:
    made = store.put_document("acme", "docs", doc("a", source="a.md"), chunks("walrus tusks"),
                              MODEL)
    assert store.get_collection("globex", "docs") is None
    assert store.list_collections("globex") == []
    assert store.collection_version("globex", "docs") is None
    assert store.get_document("globex", "docs", made.id) is None
    assert store.find_document("globex", "docs", "a.md") is None
    assert store.list_documents("globex", "docs") == []
    assert store.text_search("globex", "docs", ["walrus"], 10) == []
    assert store.vector_table("globex", "docs") is None
    assert store.chunk_texts("globex", "docs") is None
    ids = [i for i, _ in store.text_search("acme", "docs", ["walrus"], 10)]
    assert store.get_chunks("globex", "docs", ids) == []
    assert store.cached_vectors("globex", MODEL, ["c-walrus tusks"]) == {}
    assert not store.delete_document("globex", "docs", made.id)
    assert not store.delete_collection("globex", "docs")
    with pytest.raises(DocumentNotFound):
        store.put_document("globex", "docs", doc("x"), chunks("x"), MODEL, replace=made.id)
    # The same collection name in another tenant is another collection.
    store.put_document("globex", "docs", doc("b"), chunks("walrus"), MODEL)
    assert len(store.text_search("acme", "docs", ["walrus"], 10)) == 1
    assert store.get_document("acme", "docs", made.id) is not None


def test_vectors_of_another_model_are_never_mixed_in(store: KnowledgeStore) -> None:
    store.put_document("acme", "docs", doc("a"), chunks("alpha"), MODEL)
    other = EmbeddingModel("other-model", 8)
    with pytest.raises(EmbeddingMismatch, match="Re-embed it"):
        store.put_document("acme", "docs", doc("b"), chunks("beta", model=other), other)
    same_name_other_width = EmbeddingModel("test-model", 8)
    with pytest.raises(EmbeddingMismatch):
        store.put_document("acme", "docs", doc("b"), chunks("beta", model=other),
                           same_name_other_width)
    assert store.get_collection("acme", "docs").chunks == 1
    # Another collection may use another model.
    store.put_document("acme", "wide", doc("b"), chunks("beta", model=other), other)


def test_reembedding_switches_every_chunk_at_once(store: KnowledgeStore) -> None:
    store.put_document("acme", "docs", doc("a"), chunks("alpha", "beta"), MODEL)
    texts = store.chunk_texts("acme", "docs")
    assert sorted(texts.values()) == ["alpha", "beta"]
    other = EmbeddingModel("other-model", 2)
    with pytest.raises(KnowledgeError, match="run it again"):
        store.replace_vectors("acme", "docs", other, {next(iter(texts)): vector(1, 0)})
    store.replace_vectors("acme", "docs", other, {i: vector(0, 1) for i in texts})
    table = store.vector_table("acme", "docs")
    assert (table.model, table.dimensions) == ("other-model", 2)
    assert set(table.vectors) == {vector(0, 1)}
    store.put_document("acme", "docs", doc("c"), chunks("gamma", model=other), other)


def test_vectors_are_cached_by_content_hash_per_model(store: KnowledgeStore) -> None:
    store.put_document("acme", "docs", doc("a"), chunks("alpha"), MODEL)
    assert store.cached_vectors("acme", MODEL, ["c-alpha", "c-none"]) == {
        "c-alpha": vector(1, 0, 0, 0)}
    assert store.cached_vectors("acme", EmbeddingModel("other", 4), ["c-alpha"]) == {}


def test_documents_page_newest_first_and_are_found_by_source(store: KnowledgeStore) -> None:
    made = [store.put_document("acme", "docs", doc(f"d{i}", source=f"s{i}.md"),
                               chunks(f"w{i}"), MODEL, now=100.0 + i) for i in range(5)]
    first = store.list_documents("acme", "docs", limit=2)
    assert [d.id for d in first] == [made[4].id, made[3].id]
    rest = store.list_documents("acme", "docs", limit=10, before=first[-1].id)
    assert [d.id for d in rest] == [m.id for m in reversed(made[:3])]
    assert all(d.text is None for d in first)
    assert store.find_document("acme", "docs", "s2.md").id == made[2].id
    assert store.find_document("acme", "docs", "nope.md") is None
    assert [c.name for c in store.list_collections("acme")] == ["docs"]


def test_a_rare_word_outranks_a_word_in_every_chunk(store: KnowledgeStore) -> None:
    """More chunks hold `common` than one search ranks (SQLite ranks the rarest
    words that fit its budget); the chunk with the rare word still comes first,
    and a query of the common word alone still answers."""
    texts = [f"common filler number {i}" for i in range(1200)] + ["common zanzibar note"]
    store.put_document("acme", "docs", doc("many"), chunks(*texts), MODEL)
    found = store.text_search("acme", "docs", ["common", "zanzibar"], 5)
    [first] = store.get_chunks("acme", "docs", [found[0][0]])
    assert first.text == "common zanzibar note"
    assert len(store.text_search("acme", "docs", ["common"], 5)) == 5
    assert len(store.text_search("acme", "docs", ["common", "filler"], 5)) == 5


def ingestion(text: str, key: str = "k1", collection: str = "docs",
              replace: str | None = None) -> NewIngestion:
    return NewIngestion(collection, key, doc(text, source="a.md"), replace)


def staged(*positions: int) -> list[StagedVector]:
    return [StagedVector(p, f"c-{p}", vector(float(p + 1), 0, 0, 0)) for p in positions]


def test_an_ingestion_is_stored_once_per_idempotency_key(store: KnowledgeStore) -> None:
    made, created = store.create_ingestion("acme", ingestion("alpha"), now=5.0)
    again, created_again = store.create_ingestion("acme", ingestion("other text"), now=6.0)
    assert created and not created_again and again.id == made.id
    assert (made.status, made.chunks_done, made.chunks_total, made.generation) == (
        "queued", 0, None, 0)
    assert store.get_ingestion("acme", made.id).text is None
    assert store.get_ingestion("acme", made.id, with_text=True).text == "alpha"
    other, created = store.create_ingestion("globex", ingestion("alpha"))
    assert created and other.id != made.id  # keys are per tenant
    assert store.get_ingestion("globex", made.id) is None


def test_staged_vectors_count_as_progress_and_are_never_searchable(
        store: KnowledgeStore) -> None:
    made, _ = store.create_ingestion("acme", ingestion("alpha beta gamma"))
    store.start_ingestion("acme", made.id, 3)
    assert store.stage_vectors("acme", made.id, MODEL, staged(0, 1)) == 2
    assert store.stage_vectors("acme", made.id, MODEL, staged(1)) == 2  # staged once
    now = store.get_ingestion("acme", made.id)
    assert (now.status, now.chunks_done, now.chunks_total) == ("indexing", 2, 3)
    assert set(store.staged_vectors("acme", made.id, MODEL)) == {0, 1}
    assert store.staged_vectors("acme", made.id, EmbeddingModel("other", 4)) == {}
    assert store.staged_vectors("globex", made.id, MODEL) == {}
    assert store.list_collections("acme") == []  # nothing of it is searchable yet


def test_finishing_writes_the_document_once(store: KnowledgeStore) -> None:
    made, _ = store.create_ingestion("acme", ingestion("alpha beta"))
    store.stage_vectors("acme", made.id, MODEL, staged(0, 1))
    document = store.finish_ingestion("acme", made.id, chunks("alpha", "beta"), MODEL)
    assert document.chunks == 2 and document.source == "a.md"
    again = store.finish_ingestion("acme", made.id, chunks("alpha", "beta"), MODEL)
    assert again.id == document.id
    [collection] = store.list_collections("acme")
    assert (collection.documents, collection.chunks) == (1, 2)
    done = store.get_ingestion("acme", made.id)
    assert (done.status, done.document_id, done.chunks_done, done.chunks_total) == (
        "done", document.id, 2, 2)
    assert store.staged_vectors("acme", made.id, MODEL) == {}
    store.fail_ingestion("acme", made.id, "too late")  # a done ingestion stays done
    assert store.get_ingestion("acme", made.id).status == "done"
    assert store.retry_ingestion("acme", made.id) is None  # its document is there


def test_finishing_in_place_of_a_document_replaces_it(store: KnowledgeStore) -> None:
    old = store.put_document("acme", "docs", doc("walrus"), chunks("walrus tusks"), MODEL)
    made, _ = store.create_ingestion("acme", ingestion("penguin", replace=old.id))
    document = store.finish_ingestion("acme", made.id, chunks("penguin wings"), MODEL)
    assert document.id == old.id
    assert store.text_search("acme", "docs", ["walrus"], 10) == []
    gone, _ = store.create_ingestion("acme", ingestion("x", key="k2", replace="doc_missing"))
    with pytest.raises(DocumentNotFound):
        store.finish_ingestion("acme", gone.id, chunks("x"), MODEL)
    assert store.get_ingestion("acme", gone.id).status == "queued"  # rolled back


def test_a_failed_ingestion_is_queued_again_with_a_new_generation(
        store: KnowledgeStore) -> None:
    made, _ = store.create_ingestion("acme", ingestion("alpha"))
    assert store.retry_ingestion("acme", made.id) is None  # queued: nothing to retry
    store.fail_ingestion("acme", made.id, "the model was down")
    failed = store.get_ingestion("acme", made.id)
    assert (failed.status, failed.error) == ("failed", "the model was down")
    again = store.retry_ingestion("acme", made.id)
    assert (again.status, again.error, again.generation) == ("queued", None, 1)
    document = store.finish_ingestion("acme", made.id, chunks("alpha"), MODEL)
    assert store.delete_document("acme", "docs", document.id)
    revived = store.retry_ingestion("acme", made.id)  # its document was deleted since
    assert (revived.status, revived.document_id, revived.generation) == ("queued", None, 2)


def test_a_done_ingestion_whose_document_changed_since_is_queued_again(
        store: KnowledgeStore) -> None:
    made, _ = store.create_ingestion("acme", ingestion("alpha"))
    document = store.finish_ingestion("acme", made.id, chunks("alpha"), MODEL)
    store.put_document("acme", "docs", doc("beta"), chunks("beta"), MODEL, replace=document.id)
    again = store.retry_ingestion("acme", made.id)
    assert again is not None and (again.status, again.generation) == ("queued", 1)
