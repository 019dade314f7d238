"""Ingestion rows in SQL, shared by the SQLite and PostgreSQL knowledge
stores: an accepted document's text, its progress, and the vectors embedded
so far ("staged": in their own table, which no search reads), until one
transaction writes the document and its chunks and marks the ingestion done."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeo.db.dialect import Dialect, clock
from homeo.ids import new_id
from homeo.store.sealed import SealedTexts
from homeo.memory.store import (
    Document,
    DocumentNotFound,
    EmbeddingModel,
    Ingestion,
    NewChunk,
    NewDocument,
    NewIngestion,
    StagedVector,
)

_COLUMNS = (
    "id, collection, idempotency_key, title, source, format, content_hash, replace_document,"
    " status, chunks_total, chunks_done, document_id, error, generation, created_at, updated_at"
)


class SQLIngestions:
    """The ingestion half of SQLKnowledgeStore (homeo.memory.sql), which
    provides `db` and `_put`."""

    db: Dialect
    ingested: SealedTexts  # the accepted text, sealed for a sensitive tenant as documents are
    _put: Callable[..., Document]  # (db, tenant_id, collection, NewDocument, chunks, model,
    #                                  replace, at): put_document in the caller's transaction

    def create_ingestion(self, tenant_id: str, new: NewIngestion, *,
                         now: float | None = None) -> tuple[Ingestion, bool]:
        at = clock(now)
        document = new.document
        ingestion_id = new_id("ing", at)
        with self.db.write() as db:
            made = db.execute(self.db.sql(
                "INSERT INTO memory_ingestions (id, tenant_id, collection, idempotency_key, title,"
                " source, format, text, content_hash, replace_document, status, chunks_total,"
                " chunks_done, document_id, error, generation, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', NULL, 0, NULL, NULL, 0, ?, ?)"
                " ON CONFLICT (tenant_id, idempotency_key) DO NOTHING"),
                (ingestion_id, tenant_id, new.collection, new.idempotency_key, document.title,
                 document.source, document.format,
                 self.ingested.stored(tenant_id, document.text), document.content_hash,
                 new.replace_document, at, at)).rowcount
            row = db.execute(self.db.sql(
                f"SELECT {_COLUMNS} FROM memory_ingestions WHERE tenant_id = ?"
                " AND idempotency_key = ?"), (tenant_id, new.idempotency_key)).fetchone()
        return Ingestion.model_validate(dict(row)), made == 1

    def get_ingestion(self, tenant_id: str, ingestion_id: str, *,
                      with_text: bool = False) -> Ingestion | None:
        columns = _COLUMNS + (", text" if with_text else "")
        with self.db.read() as db:
            row = db.execute(self.db.sql(
                f"SELECT {columns} FROM memory_ingestions WHERE tenant_id = ? AND id = ?"),
                (tenant_id, ingestion_id)).fetchone()
        if row is None:
            return None
        record = dict(row)
        if with_text:
            record["text"] = self.ingested.plain(tenant_id, record["text"])
        return Ingestion.model_validate(record)

    def unsettled_ingestions(self, *, updated_before: float, after_id: str = "",
                             limit: int = 200) -> list[tuple[str, Ingestion]]:
        with self.db.read() as db:
            rows = db.execute(self.db.sql(
                f"SELECT tenant_id, {_COLUMNS} FROM memory_ingestions"
                " WHERE status IN ('queued', 'indexing') AND updated_at < ? AND id > ?"
                " ORDER BY id LIMIT ?"), (updated_before, after_id, limit)).fetchall()
        return [(row["tenant_id"], Ingestion.model_validate(dict(row))) for row in rows]

    def start_ingestion(self, tenant_id: str, ingestion_id: str, chunks_total: int, *,
                        now: float | None = None) -> None:
        with self.db.write() as db:
            db.execute(self.db.sql(
                "UPDATE memory_ingestions SET status = 'indexing', chunks_total = ?,"
                " updated_at = ? WHERE tenant_id = ? AND id = ?"
                " AND status IN ('queued', 'indexing')"),
                (chunks_total, clock(now), tenant_id, ingestion_id))

    def staged_vectors(self, tenant_id: str, ingestion_id: str,
                       model: EmbeddingModel) -> dict[int, StagedVector]:
        with self.db.read() as db:
            rows = db.execute(self.db.sql(
                "SELECT v.position, v.content_hash, v.vector FROM memory_ingestion_vectors v"
                " JOIN memory_ingestions i ON i.id = v.ingestion_id"
                " WHERE i.tenant_id = ? AND i.id = ? AND v.model = ? AND v.dimensions = ?"),
                (tenant_id, ingestion_id, model.name, model.dimensions)).fetchall()
        return {int(row["position"]): StagedVector(int(row["position"]), row["content_hash"],
                                                   bytes(row["vector"])) for row in rows}

    def stage_vectors(self, tenant_id: str, ingestion_id: str, model: EmbeddingModel,
                      vectors: list[StagedVector], *, now: float | None = None) -> int:
        sql = self.db.sql
        with self.db.write() as db:
            owned = db.execute(sql(
                f"SELECT id FROM memory_ingestions WHERE tenant_id = ? AND id = ?"
                f"{self.db.for_update}"), (tenant_id, ingestion_id)).fetchone()
            if owned is None:
                raise DocumentNotFound(f"no ingestion {ingestion_id!r}")
            # Vectors of another model (the alias changed between claims) go.
            db.execute(sql(
                "DELETE FROM memory_ingestion_vectors WHERE ingestion_id = ?"
                " AND (model <> ? OR dimensions <> ?)"),
                (ingestion_id, model.name, model.dimensions))
            db.cursor().executemany(sql(
                "INSERT INTO memory_ingestion_vectors (ingestion_id, position, content_hash,"
                " model, dimensions, vector) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (ingestion_id, position) DO NOTHING"),
                [(ingestion_id, staged.position, staged.content_hash, model.name,
                  model.dimensions, staged.vector) for staged in vectors])
            done = int(db.execute(sql(
                "SELECT COUNT(*) AS n FROM memory_ingestion_vectors WHERE ingestion_id = ?"),
                (ingestion_id,)).fetchone()["n"])
            db.execute(sql(
                "UPDATE memory_ingestions SET chunks_done = ?, updated_at = ? WHERE id = ?"
                " AND status IN ('queued', 'indexing')"), (done, clock(now), ingestion_id))
        return done

    def finish_ingestion(self, tenant_id: str, ingestion_id: str, chunks: list[NewChunk],
                         model: EmbeddingModel, *, now: float | None = None) -> Document:
        at = clock(now)
        sql = self.db.sql
        with self.db.write() as db:
            row = db.execute(sql(
                f"SELECT {_COLUMNS}, text FROM memory_ingestions WHERE tenant_id = ? AND id = ?"
                f"{self.db.for_update}"), (tenant_id, ingestion_id)).fetchone()
            if row is None:
                raise DocumentNotFound(f"no ingestion {ingestion_id!r}")
            ingestion = Ingestion.model_validate(dict(row))
            if ingestion.status == "done":  # a claim before this one finished it
                done = self._document_of(db, tenant_id, ingestion)
                if done is None:
                    raise DocumentNotFound(
                        f"the document of ingestion {ingestion_id!r} was deleted since")
                return done
            document = NewDocument(ingestion.title, ingestion.source, ingestion.format,
                                   self.ingested.plain(tenant_id, row["text"]),
                                   ingestion.content_hash)
            made = self._put(db, tenant_id, ingestion.collection, document, chunks, model,
                             ingestion.replace_document, at)
            db.execute(sql(
                "UPDATE memory_ingestions SET status = 'done', document_id = ?, chunks_total = ?,"
                " chunks_done = ?, error = NULL, updated_at = ? WHERE id = ?"),
                (made.id, len(chunks), len(chunks), at, ingestion_id))
            db.execute(sql("DELETE FROM memory_ingestion_vectors WHERE ingestion_id = ?"),
                       (ingestion_id,))
        return made

    def _document_of(self, db: Any, tenant_id: str, ingestion: Ingestion) -> Document | None:
        row = db.execute(self.db.sql(
            "SELECT d.id, c.name AS collection, d.title, d.source, d.format, d.chars, d.chunks,"
            " d.content_hash, d.created_at, d.updated_at FROM memory_documents d"
            " JOIN memory_collections c ON c.id = d.collection_id"
            " WHERE d.tenant_id = ? AND d.id = ?"), (tenant_id, ingestion.document_id)).fetchone()
        return None if row is None else Document.model_validate(dict(row))

    def fail_ingestion(self, tenant_id: str, ingestion_id: str, error: str, *,
                       now: float | None = None) -> None:
        with self.db.write() as db:
            db.execute(self.db.sql(
                "UPDATE memory_ingestions SET status = 'failed', error = ?, updated_at = ?"
                " WHERE tenant_id = ? AND id = ? AND status <> 'done'"),
                (error, clock(now), tenant_id, ingestion_id))

    def retry_ingestion(self, tenant_id: str, ingestion_id: str, *,
                        now: float | None = None) -> Ingestion | None:
        sql = self.db.sql
        with self.db.write() as db:
            row = db.execute(sql(
                f"SELECT {_COLUMNS} FROM memory_ingestions WHERE tenant_id = ? AND id = ?"
                f"{self.db.for_update}"), (tenant_id, ingestion_id)).fetchone()
            if row is None:
                return None
            ingestion = Ingestion.model_validate(dict(row))
            if ingestion.status == "done":
                document = self._document_of(db, tenant_id, ingestion)
                if document is not None and document.content_hash == ingestion.content_hash:
                    return None  # done, and its document still holds this text
            if ingestion.status not in ("done", "failed"):
                return None
            db.execute(sql(
                "UPDATE memory_ingestions SET status = 'queued', generation = generation + 1,"
                " chunks_total = NULL, chunks_done = 0, document_id = NULL, error = NULL,"
                " updated_at = ? WHERE id = ?"), (clock(now), ingestion_id))
            row = db.execute(sql(f"SELECT {_COLUMNS} FROM memory_ingestions WHERE id = ?"),
                             (ingestion_id,)).fetchone()
        return Ingestion.model_validate(dict(row))
