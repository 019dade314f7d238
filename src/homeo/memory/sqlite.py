"""The SQLite knowledge store: chunks in a table, their full text in an FTS5
table (porter stemming) whose rows carry the chunk ids."""

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
    CREATE VIRTUAL TABLE memory_fts USING fts5 (text, tokenize = 'porter unicode61')
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

    def _index_chunks(self, db: Any, rows: list[tuple[int, str]]) -> None:
        db.executemany("INSERT INTO memory_fts (rowid, text) VALUES (?, ?)", rows)

    def _unindex_chunks(self, db: Any, where: str, params: Sequence[Any]) -> None:
        db.execute(f"DELETE FROM memory_fts WHERE rowid IN"
                   f" (SELECT id FROM memory_chunks WHERE {where})", params)

    def text_search(self, tenant_id: str, collection: str, terms: list[str],
                    k: int) -> list[tuple[int, float]]:
        if not terms:
            return []
        # Each term quoted: FTS5 query syntax (AND, NEAR, *, -, :) in a user's
        # words is read as words. OR: a chunk need not hold every word.
        query = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
        rows = self._all(
            "SELECT memory_fts.rowid AS id, bm25(memory_fts) AS rank FROM memory_fts"
            " JOIN memory_chunks k ON k.id = memory_fts.rowid"
            " JOIN memory_collections c ON c.id = k.collection_id"
            " WHERE memory_fts MATCH ? AND k.tenant_id = ? AND c.tenant_id = ? AND c.name = ?"
            " ORDER BY rank LIMIT ?", (query, tenant_id, tenant_id, collection, k))
        return [(int(row["id"]), -float(row["rank"])) for row in rows]  # bm25: lower is better
