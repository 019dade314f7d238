"""SQLite's full text: a FTS5 table per collection, the shared table of the
first schema split into them on open, and the choice of words to rank."""

from __future__ import annotations

from pathlib import Path

from homeo.backends import open_backends
from homeo.memory.sqlite import RANKED_MATCHES, rarest_within
from homeo.memory.store import EmbeddingModel, NewChunk, NewDocument, open_store

MODEL = EmbeddingModel("test-model", 2)
VECTOR = b"\x00\x00\x80\x3f\x00\x00\x00\x00"


def put(store, collection: str, *texts: str) -> None:
    store.put_document("acme", collection, NewDocument(None, None, "text", "x", "h"),
                       [NewChunk(i, t, 0, len(t), f"c{i}{t}", VECTOR)
                        for i, t in enumerate(texts)], MODEL)


def test_the_rarest_words_that_fit_the_budget_are_ranked() -> None:
    assert rarest_within({"a": 900, "b": 3, "c": 50}, 100) == ["b", "c"]
    assert rarest_within({"a": 900, "b": 3, "c": 98}, 100) == ["b"]
    assert rarest_within({"a": 1001, "b": 1001}, 1000) == []
    assert rarest_within({"a": 0, "b": 0}, 1000) == ["a", "b"]
    assert RANKED_MATCHES >= 100


def test_the_shared_table_of_the_first_schema_is_split_per_collection(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    backends = open_backends(url)
    store = open_store(backends)
    put(store, "one", "kettles boiling", "trains")
    put(store, "two", "boiling eggs")
    # Put the data back as the first schema held it: one table, a scope token per row.
    with backends.shared.write() as db:
        tables = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%'")]
        db.execute("CREATE VIRTUAL TABLE memory_fts USING fts5"
                   " (scope, text, tokenize = 'porter unicode61')")
        db.execute("INSERT INTO memory_fts (rowid, scope, text) SELECT id,"
                   " replace(collection_id, '_', ''), text FROM memory_chunks")
        for name in tables:
            db.execute(f"DROP TABLE {name}")
    backends.close()

    backends = open_backends(url)
    store = open_store(backends)
    try:
        one = store.text_search("acme", "one", ["boiling"], 10)
        two = store.text_search("acme", "two", ["boiling"], 10)
        assert [h.text for h in store.get_chunks("acme", "one", [i for i, _ in one])] == [
            "kettles boiling"]
        assert [h.text for h in store.get_chunks("acme", "two", [i for i, _ in two])] == [
            "boiling eggs"]
        with backends.shared.read() as db:
            assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'memory_fts'"
                              ).fetchone() is None
        assert store.delete_collection("acme", "one")
        with backends.shared.read() as db:
            left = [name for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%'")]
        assert len(left) == 1  # the deleted collection's table went with it
    finally:
        backends.close()


def test_full_text_tables_that_kept_their_text_become_contentless(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    backends = open_backends(url)
    store = open_store(backends)
    put(store, "one", "kettles boiling", "trains")
    # Put the data back as the previous schema held it: a table per collection
    # that kept the text (`memory_fts_<collection>`).
    with backends.shared.write() as db:
        [terms] = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%'")]
        old = terms.replace("memory_terms_", "memory_fts_")
        db.execute(f"CREATE VIRTUAL TABLE {old} USING fts5 (text, tokenize = 'porter unicode61')")
        db.execute(f"INSERT INTO {old} (rowid, text) SELECT id, text FROM memory_chunks")
        db.execute(f"DROP TABLE {terms}")
    backends.close()

    backends = open_backends(url)
    store = open_store(backends)
    try:
        found = store.text_search("acme", "one", ["boiling"], 10)
        assert [h.text for h in store.get_chunks("acme", "one", [i for i, _ in found])] == [
            "kettles boiling"]
        with backends.shared.read() as db:
            names = {name for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%'")}
            assert names == {terms}
            assert "content=''" in db.execute(
                "SELECT replace(sql, ' ', '') FROM sqlite_master WHERE name = ?",
                (terms,)).fetchone()[0]
            # A contentless table gives back no text.
            assert [row[0] for row in db.execute(f"SELECT text FROM {terms}")] == [None, None]
    finally:
        backends.close()


def test_a_query_of_only_common_words_answers_with_the_newest_chunks_holding_all(
        tmp_path: Path) -> None:
    """Each word is in more chunks than one search ranks: bm25 would read every
    word's whole list, so the newest chunks holding every word answer, unscored."""
    backends = open_backends(f"sqlite:///{tmp_path / 'k.db'}")
    store = open_store(backends)
    try:
        common = [f"kettle boiling water {i}" for i in range(RANKED_MATCHES + 5)]
        put(store, "docs", *common, "kettle left cold", "boiling kettle again")
        found = store.text_search("acme", "docs", ["kettle", "boiling"], 3)
        text = {h.id: h.text for h in store.get_chunks("acme", "docs", [i for i, _ in found])}
        assert [i for i, _ in found] == sorted(text, reverse=True)  # newest first
        assert [text[i] for i, _ in found] == ["boiling kettle again",
                                               f"kettle boiling water {RANKED_MATCHES + 4}",
                                               f"kettle boiling water {RANKED_MATCHES + 3}"]
        assert {score for _, score in found} == {0.0}
    finally:
        backends.close()
