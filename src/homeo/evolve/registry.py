"""The model registry: base GGUF models and LoRA adapters with their sha256,
stage (candidate, challenger, champion, retired) and lineage, and which model
each alias serves.

A model is served by a deployment of HOMEO_MODELS (a local one, with `lora:`
for an adapter). Promoting a model to champion of an alias writes the control
entry `alias/<alias>` (homeo.autonomic.control) that every process applies
within its refresh: the alias sends first tries to that deployment only, its
other deployments stay fallbacks. Every change is kept in the alias's history,
so a rollback returns to the model the alias served before.
"""

from __future__ import annotations

from pathlib import Path

from homeo.autonomic.control import alias_key
from homeo.store.base import Store
from homeo.store.models import MODEL_STAGES, AliasChange, ControlEntry, ModelRecord


class RegistryError(Exception):
    """The registry refused a change; the message says what to do instead."""


def register(
    store: Store,
    model_id: str,
    path: Path,
    sha256: str,
    *,
    now: float,
    deployment: str | None = None,
    parent: str | None = None,
    dataset: str | None = None,
    stage: str = "candidate",
    metrics: dict[str, object] | None = None,
) -> ModelRecord:
    """Add a model (an adapter when `parent` names its base model)."""
    if stage not in MODEL_STAGES:
        raise RegistryError(f"stage {stage!r} is not one of {', '.join(MODEL_STAGES)}")
    if parent is not None and store.get_model(parent) is None:
        raise RegistryError(f"the parent model {parent!r} is not registered; register the"
                            " base model first")
    record = ModelRecord(id=model_id, kind="base" if parent is None else "adapter",
                         path=str(path), sha256=sha256, deployment=deployment, parent=parent,
                         dataset=dataset, stage=stage, metrics=dict(metrics or {}),  # type: ignore[arg-type]
                         created_at=now, updated_at=now)
    store.put_model(record)
    return record


def champion(store: Store, alias: str) -> str | None:
    """The id of the model `alias` serves now, per its history (None: never set)."""
    changes = store.alias_changes(alias)
    return changes[-1].model_id if changes else None


def promote(store: Store, model_id: str, alias: str, *, by: str, now: float,
            known_deployments: set[str] | None = None) -> AliasChange:
    """Make `model_id` the champion `alias` serves; the previous champion retires."""
    model = store.get_model(model_id)
    if model is None:
        raise RegistryError(f"no model {model_id!r} in the registry; `homeo models list`"
                            " shows them")
    if model.deployment is None:
        raise RegistryError(f"model {model_id!r} names no deployment; register it with"
                            " --deployment, a HOMEO_MODELS entry that serves it")
    if known_deployments is not None and model.deployment not in known_deployments:
        raise RegistryError(f"deployment {model.deployment!r} of {model_id!r} is not in"
                            f" HOMEO_MODELS for alias {alias!r}; add it there first")
    previous = champion(store, alias)
    if previous == model_id:
        raise RegistryError(f"{model_id!r} already is the champion of {alias!r}")
    return _switch(store, alias, model, previous, "promote", by=by, now=now)


def rollback(store: Store, alias: str, *, by: str, now: float) -> AliasChange:
    """Serve the model `alias` served before its latest change again."""
    changes = store.alias_changes(alias)
    if not changes or changes[-1].previous_model_id is None:
        raise RegistryError(f"alias {alias!r} has no earlier model to roll back to")
    target = store.get_model(changes[-1].previous_model_id)
    if target is None or target.deployment is None:
        raise RegistryError(f"the earlier model {changes[-1].previous_model_id!r} of"
                            f" {alias!r} is gone from the registry")
    return _switch(store, alias, target, changes[-1].model_id, "rollback", by=by, now=now)


def _switch(store: Store, alias: str, model: ModelRecord, previous: str | None,
            action: str, *, by: str, now: float) -> AliasChange:
    with store.atomic():
        if previous is not None:
            store.set_model_stage(previous, "retired", now=now)
        store.set_model_stage(model.id, "champion", now=now)
        store.set_control(ControlEntry(
            key=alias_key(alias), value={"deployment": model.deployment, "model": model.id},
            set_by=f"registry:{by}", set_at=now))
        return store.add_alias_change(AliasChange(
            alias=alias, model_id=model.id, deployment=model.deployment or "",
            previous_model_id=previous, action=action,  # type: ignore[arg-type]
            changed_by=by, at=now))
