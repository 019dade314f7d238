"""The PostgreSQL knowledge store: chunks with a generated tsvector column
(the `english` configuration: stemmed, stop words dropped) under a GIN index.

Vectors are stored as bytea (little-endian float32), searched in process:
this server may lack pgvector, and exact search in numpy is the baseline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeo.db.postgres import PostgresDatabase
from homeo.memory.sql import SQLKnowledgeStore

MIGRATIONS = [
    """
    CREATE TABLE memory_collections (
        id TEXT COLLATE "C" PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        model TEXT,
        dimensions INTEGER,
        version BIGINT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        UNIQUE (tenant_id, name)
    );
    CREATE TABLE memory_documents (
        id TEXT COLLATE "C" PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        collection_id TEXT COLLATE "C" NOT NULL REFERENCES memory_collections (id),
        title TEXT,
        source TEXT,
        format TEXT NOT NULL,
        text TEXT NOT NULL,
        chars INTEGER NOT NULL,
        chunks INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX memory_documents_collection ON memory_documents (collection_id, id);
    CREATE INDEX memory_documents_source ON memory_documents (collection_id, source);
    CREATE TABLE memory_chunks (
        id BIGSERIAL PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        collection_id TEXT COLLATE "C" NOT NULL REFERENCES memory_collections (id),
        document_id TEXT COLLATE "C" NOT NULL REFERENCES memory_documents (id),
        position INTEGER NOT NULL,
        text TEXT NOT NULL,
        start_char INTEGER NOT NULL,
        end_char INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        model TEXT NOT NULL,
        dimensions INTEGER NOT NULL,
        vector BYTEA NOT NULL,
        tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
    );
    CREATE INDEX memory_chunks_collection ON memory_chunks (collection_id, id);
    CREATE INDEX memory_chunks_document ON memory_chunks (document_id, position);
    CREATE INDEX memory_chunks_hash ON memory_chunks (tenant_id, model, content_hash);
    CREATE INDEX memory_chunks_tsv ON memory_chunks USING GIN (tsv);
    """,
    # Ingestions: a document accepted for a queue job to index (homeo.memory.ingest),
    # and the vectors its job embedded so far, which no search reads.
    """
    CREATE TABLE memory_ingestions (
        id TEXT COLLATE "C" PRIMARY KEY,
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
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        UNIQUE (tenant_id, idempotency_key)
    );
    CREATE TABLE memory_ingestion_vectors (
        ingestion_id TEXT COLLATE "C" NOT NULL REFERENCES memory_ingestions (id),
        position INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        model TEXT NOT NULL,
        dimensions INTEGER NOT NULL,
        vector BYTEA NOT NULL,
        PRIMARY KEY (ingestion_id, position)
    );
    """,
    # The tsvector is written with the row from the plain text, no longer
    # generated from the column, which may hold sealed text (encryption at rest).
    """
    DROP INDEX memory_chunks_tsv;
    ALTER TABLE memory_chunks DROP COLUMN tsv;
    ALTER TABLE memory_chunks ADD COLUMN tsv TSVECTOR;
    UPDATE memory_chunks SET tsv = to_tsvector('english', text);
    CREATE INDEX memory_chunks_tsv ON memory_chunks USING GIN (tsv);
    """,
]


class PostgresKnowledgeStore(SQLKnowledgeStore):
    def __init__(self, database: PostgresDatabase, runs: Any = None) -> None:
        super().__init__(database, MIGRATIONS, runs)

    def _insert_chunk(self, db: Any, values: tuple[Any, ...], text: str) -> int:
        row = db.execute(
            "INSERT INTO memory_chunks (tenant_id, collection_id, document_id, position, text,"
            " start_char, end_char, content_hash, model, dimensions, vector, tsv)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, to_tsvector('english', %s))"
            " RETURNING id", (*values, text)).fetchone()
        return int(row["id"])

    def _insert_chunks(self, db: Any, rows: list[tuple[tuple[Any, ...], str]]) -> list[int]:
        """One pipelined round of inserts, not a round trip per chunk; each
        row's tsvector from its plain text (the text column may be sealed)."""
        if not rows:
            return []
        cursor = db.cursor()
        cursor.executemany(
            "INSERT INTO memory_chunks (tenant_id, collection_id, document_id, position, text,"
            " start_char, end_char, content_hash, model, dimensions, vector, tsv)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, to_tsvector('english', %s))"
            " RETURNING id", [(*values, text) for values, text in rows], returning=True)
        ids = []
        while True:
            ids.append(int(cursor.fetchone()["id"]))
            if not cursor.nextset():
                return ids

    def _index_chunks(self, db: Any, collection_id: str, rows: list[tuple[int, str]]) -> None:
        """The tsvector is written with the row: nothing to add."""
        del db, collection_id, rows

    def _unindex_chunks(self, db: Any, collection_id: str, where: str,
                        params: Sequence[Any]) -> None:
        """The tsvector goes with its row."""
        del db, collection_id, where, params

    def _unindex_collection(self, db: Any, collection_id: str) -> None:
        """The tsvectors go with their rows."""
        del db, collection_id

    def text_search(self, tenant_id: str, collection: str, terms: list[str],
                    k: int) -> list[tuple[int, float]]:
        words = [term for term in terms if term.replace("_", "").isalnum()]
        if not words:
            return []
        # to_tsquery with each word alone (only letters, digits, `_`): no
        # operator in a user's words reaches the query parser. `|`: any word.
        query = " | ".join(words)
        rows = self._all(
            "SELECT k.id, ts_rank_cd(k.tsv, q) AS rank"
            " FROM memory_chunks k JOIN memory_collections c ON c.id = k.collection_id,"
            " to_tsquery('english', ?) q"
            " WHERE k.tsv @@ q AND k.tenant_id = ? AND c.tenant_id = ? AND c.name = ?"
            " ORDER BY rank DESC, k.id LIMIT ?", (query, tenant_id, tenant_id, collection, k))
        return [(int(row["id"]), float(row["rank"])) for row in rows]
