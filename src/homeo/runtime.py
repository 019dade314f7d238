"""Wire settings into running parts: backends, models, agents, metrics, worker.

The CLI commands (`serve`, `worker`, `run`) and the tests all start homeo
through `Runtime.open`, so they run the same wiring."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Tracer, TracerProvider

from homeo.audit import open_audit_log
from homeo.autonomic.control import ControlState
from homeo.backends import Backends, open_backends
from homeo.store.disk import DiskFloor
from homeo.config import Settings
from homeo.db.url import passwords
from homeo.crypto.tenants import open_cipher
from homeo.engine.agents import load_agents
from homeo.engine.budgets import TenantBudgets, tenant_budgets
from homeo.engine.catalog import AgentCatalog
from homeo.engine.worker import Emit, Worker
from homeo.llm.resolve import ModelCatalog
from homeo.observe import tracing
from homeo.observe.metrics import Metrics
from homeo.observe.slo.definitions import load_slos
from homeo.queue.base import RetryPolicy
from homeo.safety.screen import SafetyGuards
from homeo.safety.scrub import keep_secret
from homeo.sandbox.limits import parse_duration
from homeo.tools.context import ToolSettings
from homeo.tools.permissions import ToolGate


def secret_values(settings: Settings) -> list[str]:
    """What the settings hold that must never be written down: the JWT secret,
    the metrics token, provider API keys, database and queue passwords."""
    values = [settings.jwt_secret.get_secret_value(), settings.metrics_token.get_secret_value(),
              settings.openai_api_key.get_secret_value()]
    values += [deployment.api_key.get_secret_value()
               for deployments in settings.models.values() for deployment in deployments
               if deployment.api_key is not None]
    for url in (settings.database_url, settings.queue_url):
        values += passwords(url)
    return [value for value in values if value]


def set_omp_wait_policy(policy: str) -> None:
    """HOMEO_OMP_WAIT_POLICY for the in-process models' OpenMP (llama.cpp and
    torch), unless the operator set OMP_WAIT_POLICY. OpenMP reads it when it
    loads, so this must happen before the first model does (models load on
    first use, after the runtime opens)."""
    os.environ.setdefault("OMP_WAIT_POLICY", policy.upper())


@dataclass
class Runtime:
    settings: Settings
    backends: Backends
    models: ModelCatalog
    agents: AgentCatalog
    metrics: Metrics
    # None: spans go to the global provider, a no-op unless `tracing.install` set one.
    tracer_provider: TracerProvider | None = None
    tracer: Tracer = field(init=False)
    _knowledge: Any = field(init=False, default=None)
    # The guards and the tenants' policies (HOMEO_SAFETY), shared by the worker and the API.
    safety: SafetyGuards = field(init=False)
    _memories: Any = field(init=False, default=None)
    # The shared control state (autonomic/control.py), read at most once a second.
    control: ControlState | None = None
    # Seals the runs of tenants marked sensitive (HOMEO_ENCRYPTION_KEY_FILE); None: unset.
    cipher: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.tracer = tracing.tracer_of(self.tracer_provider)
        self.cipher = open_cipher(self.settings.encryption_key_file, self.backends.store)
        self.safety = SafetyGuards(self.settings.safety)

    @classmethod
    def open(cls, settings: Settings, tracer_provider: TracerProvider | None = None) -> Runtime:
        """`tracer_provider` receives the spans of the runtime's worker (tests pass
        one with an in-memory exporter); without one, a process with an OTLP
        endpoint set exports to it through the global provider."""
        keep_secret(*secret_values(settings))  # scrubbed from logs, spans, errors and runs
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        set_omp_wait_policy(settings.omp_wait_policy)
        if tracer_provider is None:  # HOMEO_OTLP_ENDPOINT; empty: no export
            tracer_provider = tracing.install(settings.otlp_endpoint)
        retry = RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds)
        backends = open_backends(settings.resolved_database_url(), retry, settings.queue_url)
        if settings.min_free_disk:
            backends.store.disk_floor = DiskFloor(settings.data_dir, settings.min_free_disk)
        control = ControlState(backends.store, refresh_seconds=settings.control_refresh_seconds)
        models = ModelCatalog(settings, tracer=tracing.tracer_of(tracer_provider),
                              held_breaker=control.breaker,  # type: ignore[arg-type]
                              weight_factor=control.weight_factor)
        agents = AgentCatalog(backends.store, models, mcp_servers=settings.mcp_servers,
                              gate=ToolGate(settings.tool_policy))
        metrics = Metrics()
        metrics.watch(backends.store, backends.queue)
        metrics.watch_breakers(models.breaker_states)
        return cls(settings, backends, models, agents, metrics, tracer_provider, control)

    def publish_agents(self) -> list[str]:
        """Load and check the agent YAML files (AgentError, one line, if one is
        bad), and make them the agents of every tenant: the default one and each
        that has an active API key. Agents whose file is gone are removed."""
        specs = load_agents(self.settings.agents_dir, self.models, self.settings.mcp_servers)
        keys = self.backends.store.list_keys()
        tenants = {self.settings.default_tenant} | {key.tenant_id for key in keys if key.active}
        for tenant in sorted(tenants):
            self.agents.publish(tenant, specs)
        return sorted(specs)

    def knowledge(self):  # -> Knowledge; imported late: numpy loads only when it is used
        """Documents and search (homeo.memory), made on first use."""
        if self._knowledge is None:
            from homeo.memory.knowledge import open_knowledge

            self._knowledge = open_knowledge(self.settings, self.backends, self.models)
        return self._knowledge

    def memories(self):  # -> Memories | None; imported late, like knowledge
        """Agent memory (homeo.memory.memories), made on first use, sharing the
        knowledge's embedder; None when the embedding alias names no model."""
        if self._memories is None:
            from homeo.llm.resolve import UnknownModel
            from homeo.memory.agent_memory import open_agent_memory_store
            from homeo.memory.lifecycle import Policy
            from homeo.memory.memories import Memories

            try:
                knowledge = self.knowledge()
            except UnknownModel:
                return None
            settings = self.settings
            policy = Policy(merge_similarity=settings.memory_merge_similarity,
                            half_life=parse_duration(settings.memory_half_life))
            self._memories = Memories(open_agent_memory_store(self.backends),
                                      knowledge.embedder, policy)
        return self._memories

    def budgets(self) -> TenantBudgets | None:
        """Tenant and agent token limits from the settings; None when none is set."""
        return tenant_budgets(self.settings, self.backends.store)

    def worker(self, concurrency: int | None = None, emit: Emit | None = None) -> Worker:
        memories = self.memories()
        return Worker(
            self.backends,
            self.agents,
            concurrency=self.settings.workers if concurrency is None else concurrency,
            lease_seconds=self.settings.lease_seconds,
            poll_seconds=self.settings.poll_seconds,
            shutdown_grace_seconds=self.settings.shutdown_grace_seconds,
            sweep_seconds=self.settings.sweep_seconds,
            max_attempts=self.settings.max_attempts,
            retry=RetryPolicy(self.settings.retry_base_seconds, self.settings.retry_max_seconds),
            metrics=self.metrics,
            emit=emit,
            budgets=self.budgets(),
            tracer=self.tracer,
            tools=ToolSettings.from_settings(self.settings),
            checkpoint_retention=parse_duration(self.settings.checkpoint_retention),
            heartbeat_seconds=self.settings.worker_heartbeat_seconds,
            safety=self.safety,
            memories=memories,
            knowledge=None if memories is None else self.knowledge(),
            memory_prune_every=parse_duration(self.settings.memory_prune_interval),
            control=self.control,
            max_concurrency=self.max_concurrency(concurrency),
            audit=open_audit_log(self.settings.audit_key_file, self.backends.store),
            slos=load_slos(self.settings.slo_file),
        )

    def max_concurrency(self, concurrency: int | None = None) -> int:
        """The most slots the autonomic loop may give this process's worker."""
        base = self.settings.workers if concurrency is None else concurrency
        return self.settings.worker_max_concurrency or max(2 * base, 1)

    def autonomic_loop(self, observer: str, act: bool = True):  # -> AutonomicLoop
        """The autonomic loop of this process (HOMEO_AUTONOMIC): it watches the
        shared database and this process's own model deployments and, with
        `act`, plans and acts as HOMEO_AUTONOMIC_ACT says. Imported late."""
        from homeo.autonomic.actuators import Actuators
        from homeo.autonomic.analyze import Analyzer, Thresholds
        from homeo.autonomic.execute import Executor, Safety, Workers
        from homeo.autonomic.loop import AutonomicLoop
        from homeo.autonomic.plan import Planner
        from homeo.autonomic.monitor import Monitor

        settings = self.settings
        monitor = Monitor(self.backends.store, self.backends.queue,
                          slos=load_slos(settings.slo_file),
                          providers=self.models.provider_stats, data_dir=settings.data_dir)
        analyzer = Analyzer(Thresholds(
            worker_stale_seconds=settings.worker_stale_seconds,
            disk_free_bytes=settings.autonomic_disk_free,
            worker_growth_bytes=settings.autonomic_worker_growth,
            baseline_every_seconds=settings.autonomic_baseline_every_seconds,
            baseline_min_samples=settings.autonomic_baseline_min_samples,
            # A failing deployment's breaker probes it once a cool-down.
            provider_recent_seconds=max(1.5 * settings.breaker_cooldown_seconds,
                                        3 * settings.autonomic_interval_seconds)))
        store = self.backends.store
        safety = Safety(mode=settings.autonomic_act,
                        max_actions_per_minute=settings.autonomic_max_actions_per_minute,
                        settle_seconds=settings.autonomic_settle_seconds,
                        hold_seconds=settings.autonomic_hold_seconds,
                        max_step=settings.autonomic_max_step,
                        in_force_seconds=settings.autonomic_control_ttl_seconds)
        executor = Executor(
            store, Planner(random.Random(settings.autonomic_seed)),
            Actuators(store, self.backends.queue, actor=f"autonomic:{observer}",
                      ttl_seconds=settings.autonomic_control_ttl_seconds),
            observer=observer, safety=safety,
            aliases=lambda: {alias: [entry.key for entry in entries]
                             for alias, entries in settings.models.items()},
            workers=Workers(base_slots=settings.workers, max_slots=self.max_concurrency()),
            audit=open_audit_log(settings.audit_key_file, store),
            prune_older_than=settings.pressure_retention_seconds())
        return AutonomicLoop(monitor, analyzer, store, observer=observer,
                             interval_seconds=settings.autonomic_interval_seconds,
                             executor=executor if act else None)

    async def aclose(self) -> None:
        tracing.flush(self.tracer_provider)
        await self.agents.aclose()  # stops the MCP servers the agents' tools started
        await self.models.aclose()
        self.backends.close()
