"""What the SQLite and PostgreSQL knowledge stores share: the same SQL with `?`
marks, run on the database's `Dialect`. Each backend keeps its migrations and
its full text: SQLite an FTS5 table kept beside the chunks, PostgreSQL a
generated tsvector column."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from homeo.db.dialect import Dialect, clock
from homeo.store.sealed import SealedTexts
from homeo.ids import new_id
from homeo.memory.sql_ingest import SQLIngestions
from homeo.memory.store import (
    ChunkHit,
    Collection,
    CollectionNotFound,
    Document,
    DocumentNotFound,
    EmbeddingMismatch,
    EmbeddingModel,
    KnowledgeError,
    KnowledgeStore,
    NewChunk,
    NewDocument,
    VectorTable,
)

_COLLECTION = (
    "SELECT c.name, c.model, c.dimensions, c.created_at,"
    " (SELECT COUNT(*) FROM memory_documents d WHERE d.collection_id = c.id) AS documents,"
    " (SELECT COUNT(*) FROM memory_chunks k WHERE k.collection_id = c.id) AS chunks"
    " FROM memory_collections c WHERE c.tenant_id = ?"
)
_DOCUMENT = (
    "SELECT d.id, c.name AS collection, d.title, d.source, d.format, d.chars, d.chunks,"
    " d.content_hash, d.created_at, d.updated_at{text}"
    " FROM memory_documents d JOIN memory_collections c ON c.id = d.collection_id"
    " WHERE d.tenant_id = ? AND c.tenant_id = ? AND c.name = ?"
)


class SQLKnowledgeStore(SQLIngestions, KnowledgeStore):
    def __init__(self, database: Dialect, migrations: Sequence[str], runs: Any = None) -> None:
        self.db = database
        # A sensitive tenant's document and chunk texts are sealed like its
        # runs (`runs`: the SQLStore beside it); the full-text index keeps terms.
        self.documents = SealedTexts(runs, "memory_documents.text")
        self.chunks = SealedTexts(runs, "memory_chunks.text")
        self.ingested = SealedTexts(runs, "memory_ingestions.text")
        self.inline_reads = database.inline_reads
        database.migrate("memory", migrations)  # type: ignore[attr-defined]

    # What each database does its own way --------------------------------
    @abstractmethod
    def _index_chunks(self, db: Any, collection_id: str, rows: list[tuple[int, str]]) -> None:
        """Add full-text entries for these (chunk id, text)."""

    @abstractmethod
    def _unindex_chunks(self, db: Any, collection_id: str, where: str,
                        params: Sequence[Any]) -> None:
        """Remove the full-text entries of the collection's chunks `where` selects."""

    @abstractmethod
    def _unindex_collection(self, db: Any, collection_id: str) -> None:
        """Remove every full-text entry of the collection (it is being deleted)."""

    @abstractmethod
    def _insert_chunk(self, db: Any, values: tuple[Any, ...], text: str) -> int:
        """Insert one chunk row (its text as stored); `text` is its plain text,
        for a full-text index kept with the row. Its new id."""

    def _insert_chunks(self, db: Any, rows: list[tuple[tuple[Any, ...], str]]) -> list[int]:
        """Insert chunk rows (a restore's batch), each with its plain text as
        `_insert_chunk` takes them; their new ids, in order."""
        return [self._insert_chunk(db, values, text) for values, text in rows]

    # Reads ---------------------------------------------------------------
    def _one(self, text: str, params: Sequence[Any] = ()) -> Any:
        with self.db.read() as db:
            return db.execute(self.db.sql(text), params).fetchone()

    def _all(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.db.read() as db:
            return db.execute(self.db.sql(text), params).fetchall()

    def get_collection(self, tenant_id: str, name: str) -> Collection | None:
        row = self._one(_COLLECTION + " AND c.name = ?", (tenant_id, name))
        return None if row is None else Collection.model_validate(dict(row))

    def list_collections(self, tenant_id: str) -> list[Collection]:
        rows = self._all(_COLLECTION + f" ORDER BY c.{self.db.name_order}", (tenant_id,))
        return [Collection.model_validate(dict(row)) for row in rows]

    def collection_version(self, tenant_id: str, name: str) -> str | None:
        row = self._one(
            "SELECT id, version FROM memory_collections WHERE tenant_id = ? AND name = ?",
            (tenant_id, name))
        return None if row is None else _version(row)

    def get_document(self, tenant_id: str, collection: str, document_id: str) -> Document | None:
        row = self._one(_DOCUMENT.format(text=", d.text") + " AND d.id = ?",
                        (tenant_id, tenant_id, collection, document_id))
        if row is None:
            return None
        record = dict(row)
        record["text"] = self.documents.plain(tenant_id, record["text"])
        return Document.model_validate(record)

    def find_document(self, tenant_id: str, collection: str, source: str) -> Document | None:
        row = self._one(_DOCUMENT.format(text="") + " AND d.source = ? ORDER BY d.id DESC LIMIT 1",
                        (tenant_id, tenant_id, collection, source))
        return None if row is None else Document.model_validate(dict(row))

    def list_documents(
        self, tenant_id: str, collection: str, *, limit: int = 100, before: str | None = None
    ) -> list[Document]:
        text = _DOCUMENT.format(text="")
        params: list[Any] = [tenant_id, tenant_id, collection]
        if before is not None:
            text += " AND d.id < ?"
            params.append(before)
        rows = self._all(text + " ORDER BY d.id DESC LIMIT ?", (*params, limit))
        return [Document.model_validate(dict(row)) for row in rows]

    def cached_vectors(self, tenant_id: str, model: EmbeddingModel,
                       hashes: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        unique = sorted(set(hashes))
        for start in range(0, len(unique), 500):  # SQLite allows 32,766 parameters
            batch = unique[start:start + 500]
            marks = ", ".join("?" * len(batch))
            rows = self._all(
                "SELECT content_hash, vector FROM memory_chunks WHERE tenant_id = ? AND model = ?"
                f" AND dimensions = ? AND content_hash IN ({marks})",
                (tenant_id, model.name, model.dimensions, *batch))
            found.update((row["content_hash"], bytes(row["vector"])) for row in rows)
        return found

    def vector_table(self, tenant_id: str, collection: str) -> VectorTable | None:
        with self.db.read() as db:
            head = db.execute(self.db.sql(
                "SELECT id, version, model, dimensions FROM memory_collections"
                " WHERE tenant_id = ? AND name = ?"), (tenant_id, collection)).fetchone()
            if head is None:
                return None
            rows = db.execute(self.db.sql(
                "SELECT id, vector FROM memory_chunks WHERE tenant_id = ? AND collection_id = ?"
                " ORDER BY id"), (tenant_id, head["id"])).fetchall()
        return VectorTable(_version(head), head["model"], head["dimensions"],
                           [int(row["id"]) for row in rows], [bytes(row["vector"]) for row in rows])

    def chunk_texts(self, tenant_id: str, collection: str) -> dict[int, str] | None:
        with self.db.read() as db:
            head = db.execute(self.db.sql(
                "SELECT id FROM memory_collections WHERE tenant_id = ? AND name = ?"),
                (tenant_id, collection)).fetchone()
            if head is None:
                return None
            rows = db.execute(self.db.sql(
                "SELECT id, text FROM memory_chunks WHERE tenant_id = ? AND collection_id = ?"
                " ORDER BY id"), (tenant_id, head["id"])).fetchall()
        return {int(row["id"]): self.chunks.plain(tenant_id, row["text"]) for row in rows}

    def replace_vectors(self, tenant_id: str, collection: str, model: EmbeddingModel,
                        vectors: dict[int, bytes]) -> None:
        sql = self.db.sql
        with self.db.write() as db:
            head = db.execute(sql(
                "SELECT id FROM memory_collections WHERE tenant_id = ? AND name = ?"
                f"{self.db.for_update}"), (tenant_id, collection)).fetchone()
            if head is None:
                raise CollectionNotFound(f"no collection {collection!r}")
            ids = {int(row["id"]) for row in db.execute(sql(
                "SELECT id FROM memory_chunks WHERE collection_id = ?"), (head["id"],))}
            if ids != set(vectors):
                raise KnowledgeError(
                    f"collection {collection!r} changed while it was re-embedded: run it again")
            db.cursor().executemany(sql(
                "UPDATE memory_chunks SET vector = ?, model = ?, dimensions = ? WHERE id = ?"),
                [(vector, model.name, model.dimensions, chunk_id)
                 for chunk_id, vector in vectors.items()])
            db.execute(sql(
                "UPDATE memory_collections SET version = version + 1, model = ?, dimensions = ?"
                " WHERE id = ?"), (model.name, model.dimensions, head["id"]))

    def get_chunks(self, tenant_id: str, collection: str, ids: list[int]) -> list[ChunkHit]:
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        rows = self._all(
            "SELECT k.id, k.document_id, d.title, d.source, k.position, k.start_char AS \"start\","
            " k.end_char AS \"end\", k.text FROM memory_chunks k"
            " JOIN memory_documents d ON d.id = k.document_id"
            " JOIN memory_collections c ON c.id = k.collection_id"
            f" WHERE k.tenant_id = ? AND c.tenant_id = ? AND c.name = ? AND k.id IN ({marks})",
            (tenant_id, tenant_id, collection, *ids))
        return [ChunkHit.model_validate({**dict(row),
                                         "text": self.chunks.plain(tenant_id, row["text"])})
                for row in rows]

    # Writes --------------------------------------------------------------
    def put_document(
        self,
        tenant_id: str,
        collection: str,
        document: NewDocument,
        chunks: list[NewChunk],
        model: EmbeddingModel,
        *,
        replace: str | None = None,
        now: float | None = None,
    ) -> Document:
        with self.db.write() as db:
            return self._put(db, tenant_id, collection, document, chunks, model, replace,
                             clock(now))

    def _put(self, db: Any, tenant_id: str, collection: str, document: NewDocument,
             chunks: list[NewChunk], model: EmbeddingModel, replace: str | None,
             at: float) -> Document:
        """put_document inside the caller's write transaction."""
        sql = self.db.sql
        collection_id = self._collection_for_write(db, tenant_id, collection, model, at)
        if replace is None:
            document_id = new_id("doc", at)
            created_at = at
            db.execute(sql(
                "INSERT INTO memory_documents (id, tenant_id, collection_id, title, source,"
                " format, text, chars, chunks, content_hash, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                (document_id, tenant_id, collection_id, document.title, document.source,
                 document.format, self.documents.stored(tenant_id, document.text),
                 len(document.text), len(chunks), document.content_hash, at, at))
        else:
            row = db.execute(sql(
                f"SELECT created_at FROM memory_documents WHERE tenant_id = ? AND id = ?"
                f" AND collection_id = ?{self.db.for_update}"),
                (tenant_id, replace, collection_id)).fetchone()
            if row is None:
                raise DocumentNotFound(
                    f"no document {replace!r} in collection {collection!r}")
            document_id, created_at = replace, float(row["created_at"])
            self._delete_chunks(db, collection_id, "document_id = ?", (document_id,))
            db.execute(sql(
                "UPDATE memory_documents SET title = ?, source = ?, format = ?, text = ?,"
                " chars = ?, chunks = ?, content_hash = ?, updated_at = ? WHERE id = ?"),
                (document.title, document.source, document.format,
                 self.documents.stored(tenant_id, document.text), len(document.text),
                 len(chunks), document.content_hash, at, document_id))
        indexed = []
        for piece in chunks:
            chunk_id = self._insert_chunk(db, (
                tenant_id, collection_id, document_id, piece.position,
                self.chunks.stored(tenant_id, piece.text), piece.start, piece.end,
                piece.content_hash, model.name, model.dimensions, piece.vector), piece.text)
            indexed.append((chunk_id, piece.text))
        self._index_chunks(db, collection_id, indexed)
        return Document(id=document_id, collection=collection, title=document.title,
                        source=document.source, format=document.format,
                        chars=len(document.text), chunks=len(chunks),
                        content_hash=document.content_hash, created_at=created_at,
                        updated_at=at)

    def _collection_for_write(self, db: Any, tenant_id: str, name: str, model: EmbeddingModel,
                              at: float) -> str:
        """The collection's id, made if new, its version raised, its model checked
        (and set, while it holds no chunks). Locks it for the transaction."""
        sql = self.db.sql
        row = db.execute(sql(
            "SELECT id, model, dimensions FROM memory_collections WHERE tenant_id = ? AND name = ?"
            f"{self.db.for_update}"), (tenant_id, name)).fetchone()
        if row is None:
            collection_id = new_id("col", at)
            db.execute(sql(
                "INSERT INTO memory_collections (id, tenant_id, name, model, dimensions,"
                " version, created_at) VALUES (?, ?, ?, ?, ?, 1, ?)"),
                (collection_id, tenant_id, name, model.name, model.dimensions, at))
            return collection_id
        collection_id = row["id"]
        if (row["model"], row["dimensions"]) != (model.name, model.dimensions):
            has_chunks = db.execute(sql(
                "SELECT 1 FROM memory_chunks WHERE collection_id = ? LIMIT 1"),
                (collection_id,)).fetchone()
            if has_chunks:
                raise EmbeddingMismatch(
                    f"collection {name!r} holds vectors of {row['model']}"
                    f" ({row['dimensions']} dimensions), but the embedding model now makes"
                    f" {model.name} ({model.dimensions} dimensions): they cannot be mixed."
                    f" Re-embed it (`homeo memory reembed --collection {name}`), or set the"
                    " embedding alias back")
        db.execute(sql(
            "UPDATE memory_collections SET version = version + 1, model = ?, dimensions = ?"
            " WHERE id = ?"), (model.name, model.dimensions, collection_id))
        return collection_id

    def _delete_chunks(self, db: Any, collection_id: str, where: str,
                       params: Sequence[Any]) -> None:
        self._unindex_chunks(db, collection_id, where, params)
        db.execute(self.db.sql(f"DELETE FROM memory_chunks WHERE {where}"), params)

    def delete_document(self, tenant_id: str, collection: str, document_id: str) -> bool:
        sql = self.db.sql
        with self.db.write() as db:
            row = db.execute(sql(
                "SELECT d.collection_id FROM memory_documents d JOIN memory_collections c"
                " ON c.id = d.collection_id WHERE d.tenant_id = ? AND c.tenant_id = ?"
                " AND c.name = ? AND d.id = ?"),
                (tenant_id, tenant_id, collection, document_id)).fetchone()
            if row is None:
                return False
            self._delete_chunks(db, row["collection_id"], "document_id = ?", (document_id,))
            db.execute(sql("DELETE FROM memory_documents WHERE id = ?"), (document_id,))
            db.execute(sql("UPDATE memory_collections SET version = version + 1 WHERE id = ?"),
                       (row["collection_id"],))
        return True

    def delete_collection(self, tenant_id: str, name: str) -> bool:
        sql = self.db.sql
        with self.db.write() as db:
            row = db.execute(sql(
                "SELECT id FROM memory_collections WHERE tenant_id = ? AND name = ?"),
                (tenant_id, name)).fetchone()
            if row is None:
                return False
            self._unindex_collection(db, row["id"])
            db.execute(sql("DELETE FROM memory_chunks WHERE collection_id = ?"), (row["id"],))
            db.execute(sql("DELETE FROM memory_documents WHERE collection_id = ?"), (row["id"],))
            db.execute(sql("DELETE FROM memory_collections WHERE id = ?"), (row["id"],))
            # Its ingestions too, done or not: a job still queued finds no
            # ingestion and ends, so nothing brings the collection back.
            db.execute(sql(
                "DELETE FROM memory_ingestion_vectors WHERE ingestion_id IN (SELECT id FROM"
                " memory_ingestions WHERE tenant_id = ? AND collection = ?)"), (tenant_id, name))
            db.execute(sql("DELETE FROM memory_ingestions WHERE tenant_id = ? AND collection = ?"),
                       (tenant_id, name))
        return True


def _version(row: Any) -> str:
    """The collection's id and write count: a collection deleted and made
    again never has the version of the one before."""
    return f"{row['id']}.{row['version']}"
