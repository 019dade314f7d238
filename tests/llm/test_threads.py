"""The in-process models' CPU threads come from the settings, passed down by the catalog."""

from __future__ import annotations

import os

import pytest

from homeo.config import Settings
from homeo.llm.resolve import ModelCatalog
from homeo.runtime import set_omp_wait_policy


def test_the_catalog_gives_the_models_their_thread_settings() -> None:
    default = ModelCatalog(Settings())
    chosen = ModelCatalog(Settings(local_threads=2, embed_threads=3))

    assert (default.get("local").threads, default.get("minilm").threads) == (1, 1)
    assert (chosen.get("local").threads, chosen.get("minilm").threads) == (2, 3)


def test_the_wait_policy_is_set_unless_the_operator_set_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    set_omp_wait_policy(Settings().omp_wait_policy)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    set_omp_wait_policy("passive")
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
