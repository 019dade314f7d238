"""Find the agent a run names. Definitions live in the store, so every worker
process (on any host) builds the same agent; built agents are cached until
their definition changes."""

from __future__ import annotations

import json
import threading

from homeo.engine.agents import Agent, AgentError, AgentSpec, build_agent
from homeo.llm.resolve import ModelCatalog
from homeo.store.base import Store


class AgentCatalog:
    def __init__(self, store: Store, models: ModelCatalog) -> None:
        self.store = store
        self.models = models
        self._built: dict[tuple[str, str], tuple[str, Agent]] = {}
        self._lock = threading.Lock()

    def publish(self, tenant_id: str, specs: dict[str, AgentSpec]) -> None:
        """Store these definitions for the tenant (created or replaced)."""
        for spec in specs.values():
            self.store.put_agent(tenant_id, spec.name, spec.model_dump())

    def get(self, tenant_id: str, name: str) -> Agent:
        record = self.store.get_agent(tenant_id, name)
        if record is None:
            raise AgentError(f"agent {name!r} is not defined for tenant {tenant_id!r}")
        fingerprint = json.dumps(record.spec, sort_keys=True)
        with self._lock:
            cached = self._built.get((tenant_id, name))
            if cached is not None and cached[0] == fingerprint:
                return cached[1]
        spec = AgentSpec.model_validate(record.spec)
        agent = build_agent(spec, self.models.get(spec.model))
        with self._lock:
            self._built[(tenant_id, name)] = (fingerprint, agent)
        return agent
