"""The knowledge verbs on both backends: add, replace, delete, search, and
never mixing vectors of two embedding models."""

from __future__ import annotations

import asyncio

import pytest
from hashembed import HashingEmbedder

from homeo.backends import Backends
from homeo.llm.providers.minilm import MiniLM
from homeo.memory.embedder import Embedder
from homeo.memory.extract import from_text
from homeo.memory.knowledge import Knowledge, query_terms
from homeo.memory.store import CollectionNotFound, EmbeddingMismatch, KnowledgeError, open_store

PETS = "# Cats\nCats purr and nap in the sun.\n\n# Trains\nThe locomotive pulls freight cars."


def hashing(backends: Backends) -> Knowledge:
    return Knowledge(open_store(backends), Embedder(HashingEmbedder(), "hash"))


def add(knowledge: Knowledge, text: str, collection: str = "docs", **fields):
    return asyncio.run(knowledge.add("acme", collection, from_text(text, "markdown"), **fields))


def search(knowledge: Knowledge, query: str, mode: str = "hybrid", k: int = 10,
           collection: str = "docs", tenant: str = "acme"):
    return asyncio.run(knowledge.search(tenant, collection, query, k, mode))


def test_each_mode_finds_the_chunk_with_its_document_and_place(backends: Backends) -> None:
    knowledge = hashing(backends)
    made = add(knowledge, PETS, title="Pets")
    for mode in ("hybrid", "text", "vector"):
        best = search(knowledge, "locomotive freight", mode)[0]
        assert best.chunk.document_id == made.id and best.chunk.position == 1
        assert best.chunk.text == "Trains\n\nThe locomotive pulls freight cars."
        assert best.chunk.title == "Pets"
    hybrid = search(knowledge, "locomotive freight")[0]
    assert hybrid.text_rank == 1 and hybrid.vector_rank == 1
    assert search(knowledge, "zeppelin", "text") == []


def test_text_embedded_before_is_not_embedded_again(backends: Backends) -> None:
    knowledge = hashing(backends)
    made = add(knowledge, PETS)
    used = knowledge.embedder.usage.input_tokens
    add(knowledge, PETS, collection="copy")  # same tenant, same model: cached by hash
    asyncio.run(knowledge.add("acme", "docs", from_text(PETS + "\n\n# Boats\nSails.", "markdown"),
                              replace=made.id))
    assert knowledge.embedder.usage.input_tokens - used == len("Boats Sails.".split())


def test_a_deleted_document_is_never_found_again(backends: Backends) -> None:
    knowledge = hashing(backends)
    gone = add(knowledge, "Walruses have long tusks.")
    add(knowledge, "Otters hold hands while they sleep.")
    assert search(knowledge, "walrus tusks", "vector")[0].chunk.document_id == gone.id
    assert asyncio.run(knowledge.delete("acme", "docs", gone.id))
    for mode in ("hybrid", "text", "vector"):
        assert all(hit.chunk.document_id != gone.id for hit in search(knowledge, "walrus", mode))


def test_another_process_sees_writes_and_a_restart_rebuilds_the_index(
        make_backends) -> None:
    first, second = hashing(make_backends()), hashing(make_backends())
    add(first, "Cats purr.")
    assert len(search(second, "cats purr", "vector")) == 1  # loaded from the store
    add(first, "Dogs bark loudly.")
    assert search(second, "dogs bark", "vector")[0].chunk.text == "Dogs bark loudly."
    restarted = hashing(make_backends())
    assert {h.chunk.text for h in search(restarted, "cats dogs", "vector")} == {
        "Cats purr.", "Dogs bark loudly."}


def test_tenants_search_only_their_own_collections(backends: Backends) -> None:
    knowledge = hashing(backends)
    add(knowledge, PETS)
    with pytest.raises(CollectionNotFound):
        search(knowledge, "cats", tenant="globex")
    asyncio.run(knowledge.add("globex", "docs", from_text("Cats are fine.", "text")))
    assert {hit.chunk.text for hit in search(knowledge, "cats", tenant="globex")} == {
        "Cats are fine."}


def test_a_new_embedding_model_is_refused_until_the_collection_is_reembedded(
        backends: Backends) -> None:
    add(hashing(backends), PETS)
    minilm = Knowledge(open_store(backends), Embedder(MiniLM(), "embedding"))
    with pytest.raises(EmbeddingMismatch, match="homeo memory reembed --collection docs"):
        search(minilm, "kitten", "vector")
    with pytest.raises(EmbeddingMismatch, match="hashing-64"):
        add(minilm, "Dogs bark.")
    assert search(minilm, "cats", "text")[0].chunk.position == 0  # text search needs no vectors
    assert asyncio.run(minilm.reembed("acme", "docs")) == 2
    assert search(minilm, "a kitten sleeping", "vector")[0].chunk.position == 0
    assert open_store(backends).get_collection("acme", "docs").model == "all-MiniLM-L6-v2"


@pytest.mark.parametrize(("call", "problem"), [
    (lambda k: k.search("acme", "docs", "  ", 10, "hybrid"), "query is empty"),
    (lambda k: k.search("acme", "docs", "x", 0, "hybrid"), "k must be between 1 and 100"),
    (lambda k: k.search("acme", "docs", "x", 10, "fuzzy"), "unknown search mode"),
    (lambda k: k.add("acme", "bad name!", from_text("x", "text")), "collection name"),
    (lambda k: k.add("acme", "docs", from_text(" \n ", "text")), "no text"),
])
def test_bad_requests_say_what_is_wrong(backends: Backends, call, problem: str) -> None:
    with pytest.raises(KnowledgeError, match=problem):
        asyncio.run(call(hashing(backends)))


def test_query_terms_drop_stop_words_unless_nothing_else_is_left() -> None:
    assert query_terms("What is the C++ std::vector?") == ["c", "std", "vector"]
    assert query_terms("what is it") == ["what", "is", "it"]
