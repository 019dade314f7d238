"""Build the FastAPI app. `homeo serve` runs it with an in-process worker pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from opentelemetry.trace import TracerProvider

from homeo import __version__
from homeo.api import (
    agents,
    audit,
    autonomic,
    collections,
    docs,
    embeddings,
    encryption,
    errors,
    health,
    keys,
    memories,
    memory_backup,
    openai_compat,
    providers,
    runs,
    safety,
    slo,
    ui,
)
from homeo.api.deps import AppParts, RateLimits, tenant
from homeo.api.middleware import BodyLimit, RequestID, RequestTiming
from homeo.api.text import reject_nul
from homeo.api.ui import site as ui
from homeo.api.usage import UsageWriter
from homeo.audit import open_audit_log
from homeo.autonomic.control import ControlState
from homeo.crypto.tenants import open_cipher
from homeo.backends import Backends
from homeo.config import Settings
from homeo.engine.budgets import tenant_budgets
from homeo.engine.worker import Worker
from homeo.jwtauth import JwtCheck, jwt_config
from homeo.keys import KeyCheck
from homeo.llm.resolve import ModelCatalog
from homeo.observe.metrics import Metrics
from homeo.observe.slo.definitions import load_slos
from homeo.ratelimit import parse_rate_limit
from homeo.safety.screen import SafetyGuards

UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def create_app(
    settings: Settings,
    backends: Backends,
    metrics: Metrics,
    worker: Worker | None = None,
    models: ModelCatalog | None = None,
    tracer_provider: TracerProvider | None = None,
    clock: Callable[[], float] = time.monotonic,
    autonomic_loop: Any = None,
    guards: SafetyGuards | None = None,
    wall_clock: Callable[[], float] = time.time,
    control: ControlState | None = None,
) -> FastAPI:
    """`worker`, when given, runs inside the app's lifespan and stops with it.
    `models` (the runtime's, shared with the worker, its breakers in `metrics`)
    serves /v1/chat/completions; without it the app opens a catalog of its own.
    The app closes the models' connections when it stops, in the event loop
    that opened them (closing them from another loop fails).

    FastAPI opens a server span per request (its native OpenTelemetry support)
    on `tracer_provider`, the runtime's; without one, on the global provider,
    and not at all while that is unset. Its metrics and logs stay off: homeo
    has its own. `clock` times key revalidation and the JWKS cache;
    `wall_clock` (shared by every process) the rate limits, the throttle on
    failed authentication and JWT expiry.
    `autonomic_loop` (an AutonomicLoop), when given, runs inside the lifespan too.
    `guards` (the runtime's guards, shared with its worker) screens run inputs and
    chat completions; without it the app makes its own from the settings.
    `control` is the shared control state (the runtime's); without it the app
    reads its own from the store: it sheds tenants' submissions, and its own
    catalog's breakers and weights follow it."""
    control = control or ControlState(backends.store,
                                      refresh_seconds=settings.control_refresh_seconds,
                                      clock=wall_clock)
    models = models or ModelCatalog(
        settings, held_breaker=control.breaker,  # type: ignore[arg-type]
        weight_factor=control.weight_factor)

    usage = UsageWriter(backends.store, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.serve(stop)) if worker is not None else None
        looping = (asyncio.create_task(autonomic_loop.run(stop))
                   if autonomic_loop is not None else None)
        writing = asyncio.create_task(usage.run())
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            if looping is not None:
                await looping
            await usage.close()
            await writing
            await models.aclose()

    app = FastAPI(
        title="homeo",
        version=__version__,
        description="Run AI agents durably, securely and observably.",
        lifespan=lifespan,
        dependencies=[Depends(reject_nul)],  # no NUL in any text, on every route
        openapi_url=None,  # /openapi.json, /docs and /redoc come from homeo.api.docs,
        docs_url=None,  # without a CDN
        redoc_url=None,
        telemetry={
            "tracer_provider": tracer_provider,
            "operation_spans": False,  # one span per request; runs and steps are homeo's
            "metrics": False,
            "logs": False,
            "exclude": _untraced,
        },
    )
    app.state.parts = AppParts(settings=settings, backends=backends, metrics=metrics, worker=worker,
                               control=control)
    app.state.models = models
    app.state.keys = KeyCheck(backends.store, clock=clock, wall_clock=wall_clock)
    users = jwt_config(settings)
    app.state.users = None if users is None else JwtCheck(users, clock=clock, now=wall_clock)
    app.state.rate_limits = RateLimits(
        caller=parse_rate_limit(settings.key_rate_limit) if settings.key_rate_limit else None,
        tenant=parse_rate_limit(settings.tenant_rate_limit) if settings.tenant_rate_limit else None,
    )
    app.state.wall_clock = wall_clock
    app.state.audit = open_audit_log(settings.audit_key_file, backends.store)
    # The runtime's cipher when it made one; else one for this store.
    app.state.cipher = backends.store.cipher or open_cipher(settings.encryption_key_file,
                                                            backends.store)
    app.state.budgets = tenant_budgets(settings, backends.store)
    app.state.usage = usage
    app.state.slos = load_slos(settings.slo_file)
    app.state.soft_budgets_warned = {}
    app.state.safety = guards or SafetyGuards(settings.safety)
    errors.install(app)
    # Everything under /v1 needs an API key or a JWT, whatever its route
    # declares; each route declares the role it needs (deps.requires).
    authenticated = [Depends(tenant)]
    app.include_router(runs.router, dependencies=authenticated)
    app.include_router(agents.router, dependencies=authenticated)
    app.include_router(openai_compat.router, dependencies=authenticated)
    app.include_router(embeddings.router, dependencies=authenticated)
    app.include_router(providers.router, dependencies=authenticated)
    app.include_router(keys.router, dependencies=authenticated)
    app.include_router(encryption.router, dependencies=authenticated)
    app.include_router(audit.router, dependencies=authenticated)
    app.include_router(collections.router, dependencies=authenticated)
    app.include_router(memories.router, dependencies=authenticated)
    app.include_router(memory_backup.router, dependencies=authenticated)
    app.include_router(safety.router, dependencies=authenticated)
    app.include_router(slo.router, dependencies=authenticated)
    app.include_router(autonomic.router, dependencies=authenticated)
    app.include_router(health.router)
    docs.install(app)
    ui.install(app)  # the dashboard at /ui
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestID)
    app.add_middleware(RequestTiming, metrics=metrics)  # outermost: it times the others too
    return app


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    """Probes and scrapes: a span each would bury the requests that matter."""
    return scope.get("path") in UNTRACED_PATHS
