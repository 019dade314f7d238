"""Wire settings into running parts: backends, models, agents, metrics, worker.

The CLI commands (`serve`, `worker`, `run`) and the tests all start homeo
through `Runtime.open`, so they run the same wiring."""

from __future__ import annotations

from dataclasses import dataclass

from homeo.backends import Backends, open_backends
from homeo.config import Settings
from homeo.engine.agents import load_agents
from homeo.engine.budgets import TenantBudgets, tenant_budgets
from homeo.engine.catalog import AgentCatalog
from homeo.engine.worker import Emit, Worker
from homeo.llm.resolve import ModelCatalog
from homeo.observe.metrics import Metrics
from homeo.queue.base import RetryPolicy


@dataclass
class Runtime:
    settings: Settings
    backends: Backends
    models: ModelCatalog
    agents: AgentCatalog
    metrics: Metrics

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        retry = RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds)
        backends = open_backends(settings.resolved_database_url(), retry)
        models = ModelCatalog(settings)
        agents = AgentCatalog(backends.store, models)
        metrics = Metrics()
        metrics.watch(backends.store, backends.queue)
        metrics.watch_breakers(models.breaker_states)
        return cls(settings, backends, models, agents, metrics)

    def publish_agents(self) -> list[str]:
        """Load the agent YAML files and store them for every tenant: the default
        one and each that has an active API key."""
        specs = load_agents(self.settings.agents_dir)
        keys = self.backends.store.list_keys()
        tenants = {self.settings.default_tenant} | {key.tenant_id for key in keys if key.active}
        for tenant in sorted(tenants):
            self.agents.publish(tenant, specs)
        return sorted(specs)

    def budgets(self) -> TenantBudgets | None:
        """Tenant and agent token limits from the settings; None when none is set."""
        return tenant_budgets(self.settings, self.backends.store)

    def worker(self, concurrency: int | None = None, emit: Emit | None = None) -> Worker:
        return Worker(
            self.backends,
            self.agents,
            concurrency=self.settings.workers if concurrency is None else concurrency,
            lease_seconds=self.settings.lease_seconds,
            poll_seconds=self.settings.poll_seconds,
            metrics=self.metrics,
            emit=emit,
            budgets=self.budgets(),
        )

    async def aclose(self) -> None:
        await self.models.aclose()
        self.backends.close()
