"""What every route may depend on: the app's parts and the caller's tenant."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from homeo.backends import Backends
from homeo.config import Settings
from homeo.engine.worker import Worker
from homeo.observe.metrics import Metrics


@dataclass
class AppParts:
    settings: Settings
    backends: Backends
    metrics: Metrics
    worker: Worker | None = None


def parts(request: Request) -> AppParts:
    return request.app.state.parts


def tenant(request: Request) -> str:
    """The caller's tenant. One default tenant until API keys and roles exist."""
    return request.app.state.parts.settings.default_tenant
