"""The SQLite knowledge store: chunks in a table, and each collection's full
text in its own contentless FTS5 table (porter stemming; the terms, not the
text), `memory_terms_<collection>`,
whose rows carry the chunk ids.

A table per collection, not one for all: FTS5's bm25 reads the whole list of
every phrase of a query to weigh it, so a collection filter inside the one
shared table (a token on every row) cost a read of every row of the
collection per search (~35 ms at 100k chunks), and a join cost a row lookup
per match. Apart, the ranking also weighs words by this collection alone,
never by other tenants' text.

FTS5 scores every match before it can sort (about 5 us a row here), and
bm25 reads the whole list of each word of the query to weigh it (about 30 ms
for a word in most of 100k chunks), so a common word made a search of 100k
chunks cost half a second (bench/memory_search.py). A search therefore ranks
at most `RANKED_MATCHES` chunks, and never by a common word: it first counts,
cheaply and only up to that budget, how many chunks hold each word, then ranks
by bm25 the chunks holding the rarest words whose counts fit in the budget.
Words left out are the commonest of the query, the ones bm25 weighs least. A
query of nothing but such words is answered by the newest chunks holding all
of them, newest first, unscored: every one of them holds every word, so bm25
would order them only by how often and in how short a chunk, at the price of
reading every word's whole list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from homeo.db.sqlite import SQLiteDatabase
from homeo.memory.sql import SQLKnowledgeStore

RANKED_MATCHES = 1000  # the most chunks one full-text search scores

MIGRATIONS = [
    """
    CREATE TABLE memory_collections (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        model TEXT,
        dimensions INTEGER,
        version INTEGER NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (tenant_id, name)
    );
    CREATE TABLE memory_documents (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        collection_id TEXT NOT NULL REFERENCES memory_collections (id),
        title TEXT,
        source TEXT,
        format TEXT NOT NULL,
        text TEXT NOT NULL,
        chars INTEGER NOT NULL,
        chunks INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX memory_documents_collection ON memory_documents (collection_id, id);
    CREATE INDEX memory_documents_source ON memory_documents (collection_id, source);
    CREATE TABLE memory_chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        collection_id TEXT NOT NULL REFERENCES memory_collections (id),
        document_id TEXT NOT NULL REFERENCES memory_documents (id),
        position INTEGER NOT NULL,
        text TEXT NOT NULL,
        start_char INTEGER NOT NULL,
        end_char INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        model TEXT NOT NULL,
        dimensions INTEGER NOT NULL,
        vector BLOB NOT NULL
    );
    CREATE INDEX memory_chunks_collection ON memory_chunks (collection_id, id);
    CREATE INDEX memory_chunks_document ON memory_chunks (document_id, position);
    CREATE INDEX memory_chunks_hash ON memory_chunks (tenant_id, model, content_hash);
    CREATE VIRTUAL TABLE memory_fts USING fts5 (scope, text, tokenize = 'porter unicode61')
    """,
    # The shared full-text table is split into one per collection by
    # `_split_shared_fts` (dynamic table names are beyond a SQL migration).
    # Ingestions: a document accepted for a queue job to index (homeo.memory.ingest),
    # and the vectors its job embedded so far, which no search reads.
    """
    CREATE TABLE memory_ingestions (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        collection TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        title TEXT,
        source TEXT,
        format TEXT NOT NULL,
        text TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        replace_document TEXT,
        status TEXT NOT NULL,
        chunks_total INTEGER,
        chunks_done INTEGER NOT NULL,
        document_id TEXT,
        error TEXT,
        generation INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (tenant_id, idempotency_key)
    );
    CREATE TABLE memory_ingestion_vectors (
        ingestion_id TEXT NOT NULL REFERENCES memory_ingestions (id),
        position INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        model TEXT NOT NULL,
        dimensions INTEGER NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (ingestion_id, position)
    );
    """,
]


class SQLiteKnowledgeStore(SQLKnowledgeStore):
    def __init__(self, database: SQLiteDatabase, runs: Any = None) -> None:
        super().__init__(database, MIGRATIONS, runs)
        self._split_shared_fts()
        self._contentless_fts()

    def _contentless_fts(self) -> None:
        """Replace each collection's full-text table that keeps its text
        (`memory_fts_<collection>`) by a contentless one that keeps only the
        terms (`memory_terms_<collection>`): the text may be sealed in its
        row (encryption at rest). Once, in one transaction."""
        with self.db.write() as db:
            old = [row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'memory_fts_*'"
                " AND name NOT GLOB 'memory_fts_*_*'").fetchall()]
            for name in old:
                new = "memory_terms_" + name.removeprefix("memory_fts_")
                _create(db, new)
                db.execute(f"INSERT INTO {new} (rowid, text) SELECT rowid, text FROM {name}")
                db.execute(f"DROP TABLE {name}")

    def _split_shared_fts(self) -> None:
        """Move the rows of the one full-text table that migration 1 made into
        a table per collection, then drop it: once, in one transaction."""
        with self.db.write() as db:
            shared = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                                " AND name = 'memory_fts'").fetchone()
            if shared is None:
                return
            for (collection_id,) in db.execute("SELECT id FROM memory_collections").fetchall():
                table = _table(db, collection_id)
                db.execute(f"INSERT INTO {table} (rowid, text) SELECT rowid, text FROM memory_fts"
                           " WHERE scope = ?", (_scope(collection_id),))
            db.execute("DROP TABLE memory_fts")

    def _insert_chunk(self, db: Any, values: tuple[Any, ...], text: str) -> int:
        return int(db.execute(
            "INSERT INTO memory_chunks (tenant_id, collection_id, document_id, position, text,"
            " start_char, end_char, content_hash, model, dimensions, vector)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values).lastrowid)

    def _index_chunks(self, db: Any, collection_id: str, rows: list[tuple[int, str]]) -> None:
        db.executemany(f"INSERT INTO {_table(db, collection_id)} (rowid, text) VALUES (?, ?)",
                       rows)

    def _unindex_chunks(self, db: Any, collection_id: str, where: str,
                        params: Sequence[Any]) -> None:
        # A contentless table forgets a row only when told the text it indexed.
        rows = db.execute(f"SELECT id, tenant_id, text FROM memory_chunks WHERE {where}",
                          params).fetchall()
        db.executemany(f"INSERT INTO {_table(db, collection_id)} ({_name(collection_id)}, rowid,"
                       " text) VALUES ('delete', ?, ?)",
                       [(row["id"], self.chunks.plain(row["tenant_id"], row["text"]))
                        for row in rows])

    def _unindex_collection(self, db: Any, collection_id: str) -> None:
        db.execute(f"DROP TABLE IF EXISTS {_name(collection_id)}")

    def text_search(self, tenant_id: str, collection: str, terms: list[str],
                    k: int) -> list[tuple[int, float]]:
        if not terms:
            return []
        head = self._one("SELECT id FROM memory_collections WHERE tenant_id = ? AND name = ?",
                         (tenant_id, collection))
        if head is None:
            return []
        table = _name(head["id"])
        with self.db.read() as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() \
                    is None:  # made by a write this reader's snapshot predates
                return []
            counts = {term: _matches(db, table, _quoted(term)) for term in terms}
            ranked = rarest_within(counts, RANKED_MATCHES)
            if not ranked:  # every word is common: the newest chunks holding them all
                newest = db.execute(
                    f"SELECT rowid FROM {table} WHERE {table} MATCH ? ORDER BY rowid DESC"
                    " LIMIT ?", (" AND ".join(map(_quoted, terms)), k)).fetchall()
                return [(int(row[0]), 0.0) for row in newest]
            rows = db.execute(
                f"SELECT rowid, bm25({table}) FROM {table} WHERE {table} MATCH ?"
                " ORDER BY 2 LIMIT ?", (_any(ranked), k)).fetchall()
        return [(int(row[0]), -float(row[1])) for row in rows]  # bm25: lower is better


def rarest_within(counts: dict[str, int], budget: int) -> list[str]:
    """The words to rank by, rarest first: as many as fit, with the chunks
    holding them, in `budget` (`counts`: how many chunks hold each word, counted
    up to budget + 1). Empty when even the rarest is held by more."""
    chosen: list[str] = []
    total = 0
    for term in sorted(counts, key=counts.__getitem__):
        if total + counts[term] > budget:
            break
        chosen.append(term)
        total += counts[term]
    return chosen


def _matches(db: Any, table: str, match: str) -> int:
    """How many rows `match` finds, counted up to RANKED_MATCHES + 1 (not scored)."""
    return int(db.execute(
        f"SELECT count(*) FROM (SELECT rowid FROM {table} WHERE {table} MATCH ? LIMIT ?)",
        (match, RANKED_MATCHES + 1)).fetchone()[0])


def _quoted(term: str) -> str:
    """A word as an FTS5 string: query syntax (AND, NEAR, *, -, :) in a user's
    words is read as words."""
    return '"' + term.replace('"', '""') + '"'


def _any(terms: list[str]) -> str:
    """OR: a chunk need not hold every word."""
    return " OR ".join(map(_quoted, terms))


def _scope(collection_id: str) -> str:
    """The collection id as one FTS token (unicode61 splits at `_`): how
    migration 1's shared table marked a row's collection."""
    return collection_id.replace("_", "")


_ID = re.compile(r"[a-z]+_[0-9a-f]+")


def _name(collection_id: str) -> str:
    """The collection's full-text table. Ids are made by homeo.ids.new_id;
    the check keeps anything else out of the SQL."""
    if not _ID.fullmatch(collection_id):
        raise ValueError(f"not a collection id: {collection_id!r}")
    return f"memory_terms_{_scope(collection_id)}"


def _table(db: Any, collection_id: str) -> str:
    """The collection's full-text table, made if it is new."""
    name = _name(collection_id)
    _create(db, name)
    return name


def _create(db: Any, name: str) -> None:
    """A contentless full-text table: the chunks' terms, not their text."""
    db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5"
               " (text, content = '', tokenize = 'porter unicode61')")
