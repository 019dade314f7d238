"""What every route may depend on: the app's parts and the caller's tenant.

Dependencies and routes are `async def` and hand only the database work to a
thread (`asyncio.to_thread`): a sync `def` would cost a thread-pool hop for
each dependency, the route and its response validation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

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


async def parts(request: Request) -> AppParts:
    return request.app.state.parts


async def tenant(request: Request) -> str:
    """The caller's tenant. One default tenant until API keys and roles exist."""
    return request.app.state.parts.settings.default_tenant


T = TypeVar("T")


async def read(app: AppParts, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store read: inline when the store says that is safe, else in a thread."""
    if app.backends.store.inline_reads:
        return call(*args, **kwargs)
    return await asyncio.to_thread(call, *args, **kwargs)
