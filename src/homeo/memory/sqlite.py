"""The SQLite knowledge store: chunks in a table, their full text in an FTS5
table (porter stemming) whose rows carry the chunk ids.

Each FTS row also holds its collection's id as a token (`scope`), so a search
is one FTS5 query, `scope:ID AND (words)`, ranked inside FTS5 with no join:
joining the chunks table first made every match cost a row lookup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeo.db.sqlite import SQLiteDatabase
from homeo.memory.sql import SQLKnowledgeStore

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
]


class SQLiteKnowledgeStore(SQLKnowledgeStore):
    def __init__(self, database: SQLiteDatabase) -> None:
        super().__init__(database, MIGRATIONS)

    def _insert_chunk(self, db: Any, values: tuple[Any, ...]) -> int:
        return int(db.execute(
            "INSERT INTO memory_chunks (tenant_id, collection_id, document_id, position, text,"
            " start_char, end_char, content_hash, model, dimensions, vector)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values).lastrowid)

    def _index_chunks(self, db: Any, collection_id: str, rows: list[tuple[int, str]]) -> None:
        db.executemany("INSERT INTO memory_fts (rowid, scope, text) VALUES (?, ?, ?)",
                       [(chunk_id, _scope(collection_id), text) for chunk_id, text in rows])

    def _unindex_chunks(self, db: Any, where: str, params: Sequence[Any]) -> None:
        db.execute(f"DELETE FROM memory_fts WHERE rowid IN"
                   f" (SELECT id FROM memory_chunks WHERE {where})", params)

    def text_search(self, tenant_id: str, collection: str, terms: list[str],
                    k: int) -> list[tuple[int, float]]:
        if not terms:
            return []
        head = self._one("SELECT id FROM memory_collections WHERE tenant_id = ? AND name = ?",
                         (tenant_id, collection))
        if head is None:
            return []
        # Each term quoted: FTS5 query syntax (AND, NEAR, *, -, :) in a user's
        # words is read as words. OR: a chunk need not hold every word.
        words = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
        rows = self._all(
            # bm25 weights: the scope column counts for nothing in the ranking.
            "SELECT rowid AS id, bm25(memory_fts, 0.0, 1.0) AS score FROM memory_fts"
            " WHERE memory_fts MATCH ? ORDER BY score LIMIT ?",
            (f'scope : "{_scope(head["id"])}" AND text : ({words})', k))
        return [(int(row["id"]), -float(row["score"])) for row in rows]  # bm25: lower is better


def _scope(collection_id: str) -> str:
    """The collection id as one FTS token (unicode61 splits at `_`)."""
    return collection_id.replace("_", "")
