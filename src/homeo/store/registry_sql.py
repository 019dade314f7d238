"""The SQL of curated data sets and the model registry, shared by the SQLite and
PostgreSQL stores (a part of `SQLStore`, kept apart as one concept)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeo.store.base import StoreError
from homeo.store.models import AliasChange, DatasetRecord, ModelRecord

DATASET_JSON = ("train", "validation", "provenance")
MODEL_JSON = ("metrics",)


class RegistrySQL:
    """Mixed into `SQLStore`, whose `db`, `one` and `all` it uses."""

    db: Any
    one: Callable[..., Any]
    all: Callable[..., list[Any]]

    def put_dataset(self, dataset: DatasetRecord) -> DatasetRecord:
        with self.db.write() as db:
            cursor = db.execute(self.db.sql(
                "SELECT COALESCE(MAX(version), 0) AS latest FROM datasets"
                " WHERE tenant_id = ? AND name = ?"), (dataset.tenant_id, dataset.name))
            stored = dataset.model_copy(update={"version": int(_first(cursor.fetchone())) + 1})
            db.execute(self.db.sql(
                "INSERT INTO datasets (tenant_id, name, version, train, validation, provenance,"
                " sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                (stored.tenant_id, stored.name, stored.version, self.db.json_param(stored.train),
                 self.db.json_param(stored.validation), self.db.json_param(stored.provenance),
                 stored.sha256, stored.created_at))
        return stored

    def get_dataset(self, tenant_id: str, name: str,
                    version: int | None = None) -> DatasetRecord | None:
        if version is None:
            row = self.one("SELECT * FROM datasets WHERE tenant_id = ? AND name = ?"
                           " ORDER BY version DESC LIMIT 1", (tenant_id, name))
        else:
            row = self.one("SELECT * FROM datasets WHERE tenant_id = ? AND name = ?"
                           " AND version = ?", (tenant_id, name, version))
        return None if row is None else DatasetRecord.model_validate(
            self.db.decode(row, DATASET_JSON))

    def list_datasets(self, tenant_id: str) -> list[DatasetRecord]:
        rows = self.all("SELECT * FROM datasets WHERE tenant_id = ? ORDER BY name, version",
                        (tenant_id,))
        return [DatasetRecord.model_validate(self.db.decode(row, DATASET_JSON)) for row in rows]

    def put_model(self, model: ModelRecord) -> None:
        m = model
        with self.db.write() as db:
            taken = db.execute(self.db.sql("SELECT id FROM models WHERE id = ?"), (m.id,))
            if taken.fetchone() is not None:
                raise StoreError(f"a model {m.id!r} is already registered; choose another id")
            db.execute(self.db.sql(
                "INSERT INTO models (id, kind, path, sha256, deployment, parent, dataset, stage,"
                " metrics, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                (m.id, m.kind, m.path, m.sha256, m.deployment, m.parent, m.dataset, m.stage,
                 self.db.json_param(m.metrics), m.created_at, m.updated_at))

    def get_model(self, model_id: str) -> ModelRecord | None:
        row = self.one("SELECT * FROM models WHERE id = ?", (model_id,))
        return None if row is None else ModelRecord.model_validate(
            self.db.decode(row, MODEL_JSON))

    def list_models(self) -> list[ModelRecord]:
        rows = self.all("SELECT * FROM models ORDER BY created_at, id")
        return [ModelRecord.model_validate(self.db.decode(row, MODEL_JSON)) for row in rows]

    def set_model_stage(self, model_id: str, stage: str, *, now: float) -> bool:
        with self.db.write() as db:
            changed = db.execute(self.db.sql(
                "UPDATE models SET stage = ?, updated_at = ? WHERE id = ?"),
                (stage, now, model_id))
            return changed.rowcount > 0

    def add_alias_change(self, change: AliasChange) -> AliasChange:
        c = change
        with self.db.write() as db:
            cursor = db.execute(self.db.sql(
                "SELECT COALESCE(MAX(seq), 0) AS latest FROM model_alias_changes"
                " WHERE alias = ?"), (c.alias,))
            stored = c.model_copy(update={"seq": int(_first(cursor.fetchone())) + 1})
            db.execute(self.db.sql(
                "INSERT INTO model_alias_changes (alias, seq, model_id, deployment,"
                " previous_model_id, action, changed_by, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                (stored.alias, stored.seq, stored.model_id, stored.deployment,
                 stored.previous_model_id, stored.action, stored.changed_by, stored.at))
        return stored

    def alias_changes(self, alias: str | None = None) -> list[AliasChange]:
        if alias is None:
            rows = self.all("SELECT * FROM model_alias_changes ORDER BY at, alias, seq")
        else:
            rows = self.all("SELECT * FROM model_alias_changes WHERE alias = ? ORDER BY seq",
                            (alias,))
        return [AliasChange.model_validate(self.db.decode(row)) for row in rows]


def _first(row: Any) -> Any:
    """The first column of a row, whether the driver gives tuples or dicts."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
