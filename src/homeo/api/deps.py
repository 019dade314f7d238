"""What every route may depend on: the app's parts and the caller's tenant,
which its API key names (`Authorization: Bearer hk_...`; see homeo.keys).

Dependencies and routes are `async def` and hand only the database work to a
thread (`asyncio.to_thread`): a sync `def` would cost a thread-pool hop for
each dependency, the route and its response validation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request

from homeo.backends import Backends
from homeo.config import Settings
from homeo.engine.worker import Worker
from homeo.keys import Caller, KeyCheck, KeyRejected, Throttled
from homeo.observe.metrics import Metrics
from homeo.ratelimit import RateLimit
from homeo.store.base import read_async


@dataclass
class AppParts:
    settings: Settings
    backends: Backends
    metrics: Metrics
    worker: Worker | None = None


async def parts(request: Request) -> AppParts:
    return request.app.state.parts


async def caller(request: Request) -> Caller:
    """Who sent the request, from its API key: 401 without a valid key, 429
    when the key is over HOMEO_KEY_RATE_LIMIT or the client address has failed
    too many key checks (homeo.keys)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not token:
        raise _unauthorized(
            "missing API key: send `Authorization: Bearer <key>`;"
            " `homeo keys create --tenant NAME` makes one"
        )
    if scheme.lower() != "bearer":
        raise _unauthorized("the Authorization header must be `Bearer <key>`")
    keys: KeyCheck = request.app.state.keys
    client = request.client.host if request.client else "unknown"
    try:
        found = await keys.caller(token.strip(), client)
    except KeyRejected as rejected:
        raise _unauthorized(str(rejected)) from None
    except Throttled as throttled:
        raise HTTPException(
            429, f"{throttled}; check the key you send",
            headers={"Retry-After": str(math.ceil(throttled.retry_after))},
        ) from None
    limit: RateLimit | None = request.app.state.key_rate_limit
    if limit is not None:
        wait = request.app.state.key_rate_limiter.take(("key", found.key_id), limit)
        if wait > 0:
            raise HTTPException(
                429,
                f"API key hk_{found.key_id}_… is over its rate limit"
                f" HOMEO_KEY_RATE_LIMIT={limit}; retry in {wait:.1f}s",
                headers={"Retry-After": str(math.ceil(wait))},
            )
    return found


async def tenant(found: Annotated[Caller, Depends(caller)]) -> str:
    """The tenant of the caller's API key."""
    return found.tenant_id


async def admin(request: Request, found: Annotated[Caller, Depends(caller)]) -> Caller:
    """The caller, if its key is an admin key of its tenant; else 403."""
    if not found.is_admin:
        what = ("managing keys" if request.url.path.startswith("/v1/keys")
                else f"{request.url.path}")
        raise HTTPException(
            403, f"API key hk_{found.key_id}_… is a member key; {what} needs an admin"
            " key (`homeo keys create --role admin`)"
        )
    return found


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


T = TypeVar("T")


async def read(app: AppParts, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store read: inline when the store says that is safe, else in a thread."""
    return await read_async(app.backends.store, call, *args, **kwargs)
