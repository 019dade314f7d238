"""The model registry: register, promote and roll back; a promotion reaches the
router of another process through the control state in the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from homeo.autonomic.control import ControlState
from homeo.backends import Backends
from homeo.config import ModelDeployment, Settings
from homeo.evolve.registry import RegistryError, champion, promote, register, rollback
from homeo.llm.resolve import ModelCatalog
from homeo.llm.router import Router

SCRIPTED = "scripted:homeo.llm.providers.scripted:tool_call"


def _router_in_another_process(backends: Backends) -> Router:
    control = ControlState(backends.store, refresh_seconds=0.0)
    settings = Settings(models={"chat": [ModelDeployment(model=SCRIPTED, name="smollm2"),
                                         ModelDeployment(model=SCRIPTED, name="smollm2-tuned")]})
    router = ModelCatalog(settings, weight_factor=control.weight_factor).get("chat")
    assert isinstance(router, Router)
    return router


def test_promote_and_rollback_move_the_alias_everywhere(
        make_backends: Callable[..., Backends]) -> None:
    here, there = make_backends(), make_backends()
    router = _router_in_another_process(there)
    assert router.weights() == [1.0, 1.0]
    register(here.store, "smollm2", Path("/m/base.gguf"), "a" * 64, deployment="smollm2",
             now=1.0)
    register(here.store, "smollm2-tuned-1", Path("/m/tuned.gguf"), "b" * 64,
             deployment="smollm2-tuned", parent="smollm2", dataset="support@1",
             stage="challenger", metrics={"validation_loss": 1.2}, now=2.0)

    promote(here.store, "smollm2", "chat", by="ops", now=3.0)
    assert router.weights() == [1.0, 0.0]
    change = promote(here.store, "smollm2-tuned-1", "chat", by="ops", now=4.0)
    assert change.previous_model_id == "smollm2" and change.seq == 2
    assert router.weights() == [0.0, 1.0]
    assert [d.name for d in router.order()][0] == "smollm2-tuned"
    assert there.store.get_model("smollm2-tuned-1").stage == "champion"
    assert there.store.get_model("smollm2").stage == "retired"

    back = rollback(here.store, "chat", by="ops", now=5.0)
    assert (back.action, back.model_id, back.previous_model_id) == (
        "rollback", "smollm2", "smollm2-tuned-1")
    assert router.weights() == [1.0, 0.0]
    assert champion(there.store, "chat") == "smollm2"
    assert there.store.get_model("smollm2-tuned-1").stage == "retired"
    assert [c.action for c in there.store.alias_changes("chat")] == [
        "promote", "promote", "rollback"]


def test_refusals_say_what_to_do(backends: Backends) -> None:
    store = backends.store
    with pytest.raises(RegistryError, match="register the base model first"):
        register(store, "a1", Path("/a.gguf"), "c" * 64, parent="absent", now=1.0)
    with pytest.raises(RegistryError, match="is not one of"):
        register(store, "b", Path("/b.gguf"), "c" * 64, stage="gold", now=1.0)
    register(store, "b", Path("/b.gguf"), "c" * 64, now=1.0)
    with pytest.raises(RegistryError, match="names no deployment"):
        promote(store, "b", "chat", by="ops", now=2.0)
    with pytest.raises(RegistryError, match="homeo models list"):
        promote(store, "absent", "chat", by="ops", now=2.0)
    with pytest.raises(RegistryError, match="no earlier model"):
        rollback(store, "chat", by="ops", now=2.0)
    register(store, "c", Path("/c.gguf"), "d" * 64, deployment="smollm2", now=1.0)
    with pytest.raises(RegistryError, match="not in HOMEO_MODELS"):
        promote(store, "c", "chat", by="ops", now=2.0, known_deployments={"other"})
    promote(store, "c", "chat", by="ops", now=2.0)
    with pytest.raises(RegistryError, match="already is the champion"):
        promote(store, "c", "chat", by="ops", now=3.0)
