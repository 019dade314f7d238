"""What every route may depend on: the app's parts, the caller (an API key,
`Authorization: Bearer hk_...`, see homeo.keys; or a JWT user, see
homeo.jwtauth), its tenant, and each route's declared access (`requires`).

Dependencies and routes are `async def` and hand only the database work to a
thread (`asyncio.to_thread`): a sync `def` would cost a thread-pool hop for
each dependency, the route and its response validation."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request

from homeo.api import sessions
from homeo.audit import AuditLog, Event
from homeo.autonomic.control import ControlState
from homeo.backends import Backends
from homeo.config import Settings
from homeo.engine.worker import Worker
from homeo.jwtauth import JwksUnavailable, JwtCheck, TokenRejected, looks_like_jwt
from homeo.keys import Caller, KeyCheck, KeyRejected, Throttled
from homeo.observe.metrics import Metrics
from homeo.ratelimit import RateLimit
from homeo.store.base import read_async
from homeo.store.models import ROLES, Role, role_allows


# The dashboard's session cookie: the secret of a server-side session (homeo.api.sessions).
SESSION_COOKIE = "homeo_session"
_FORGET_SESSION = f'{SESSION_COOKIE}=""; Max-Age=0; Path=/ui; HttpOnly; SameSite=strict'


@dataclass
class AppParts:
    settings: Settings
    backends: Backends
    metrics: Metrics
    worker: Worker | None = None
    # The shared control state the autonomic loop writes (autonomic/control.py).
    control: ControlState | None = None


async def parts(request: Request) -> AppParts:
    return request.app.state.parts


async def caller(request: Request) -> Caller:
    """Who sent the request, from its API key or JWT: 401 without a valid one,
    429 when the client address has failed too many checks (homeo.keys) or the
    caller or its tenant is over its rate limit, 503 when the JWKS that would
    check a JWT cannot be read."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not token:
        raise _unauthorized(
            "missing API key: send `Authorization: Bearer <key>`;"
            " `homeo keys create --tenant NAME` makes one"
        )
    if scheme.lower() != "bearer":
        raise _unauthorized("the Authorization header must be `Bearer <key>`")
    return await caller_of(request, token.strip())


async def session_caller(request: Request) -> Caller:
    """The dashboard's caller (homeo.api.ui): from the Authorization header when
    one is sent (the API's checks), else from the session cookie that signing in
    set: a live server-side session (homeo.api.sessions)."""
    if request.headers.get("authorization"):
        return await caller(request)
    secret = request.cookies.get(SESSION_COOKIE, "").strip()
    if not secret:
        raise _unauthorized("not signed in: sign in at /ui with an API key or a JWT")
    store = request.app.state.parts.backends.store
    try:
        found = await asyncio.to_thread(sessions.session_caller, store, secret,
                                        now=request.app.state.wall_clock())
    except sessions.SessionEnded as ended:  # revoked, expired: the browser forgets it
        raise HTTPException(401, str(ended), headers={"Set-Cookie": _FORGET_SESSION}) from None
    await _take_rate_tokens(request, found)
    return found


async def caller_of(request: Request, token: str) -> Caller:
    """The caller an API key or JWT names, with every check `caller` makes."""
    keys: KeyCheck = request.app.state.keys
    users: JwtCheck | None = request.app.state.users
    client = request.client.host if request.client else "unknown"
    try:
        if users is not None and looks_like_jwt(token):
            found = await _user(keys, users, token, client)
        else:
            found = await keys.caller(token, client)
    except (KeyRejected, TokenRejected) as rejected:
        raise _unauthorized(str(rejected)) from None
    except Throttled as throttled:
        raise HTTPException(
            429, f"{throttled}; check the key you send",
            headers={"Retry-After": str(math.ceil(throttled.retry_after))},
        ) from None
    except JwksUnavailable as error:
        raise HTTPException(503, f"{error}; JWT users cannot sign in until it can be read",
                            headers={"Retry-After": "10"}) from None
    await _take_rate_tokens(request, found)
    return found


async def _user(keys: KeyCheck, users: JwtCheck, token: str, client: str) -> Caller:
    """A JWT's caller; its failures count against the address as a key's do.
    Checking a token is cheap (no argon2), so it comes first and a valid one is
    never refused, as a verified key is not: the shared throttle is read only
    when a check fails, not on every request."""
    try:
        return await users.caller(token)
    except TokenRejected:
        wait = await keys.throttle.wait(client)
        if wait > 0:
            raise Throttled(client, wait) from None
        await keys.throttle.failed(client)
        raise


async def _take_rate_tokens(request: Request, found: Caller) -> None:
    """One token from the caller's bucket and its tenant's, kept in the store so
    every server on the database spends the same budget; 429 when one is empty."""
    limits: RateLimits = request.app.state.rate_limits
    buckets = limits.buckets(found)
    if not buckets:
        return
    store = request.app.state.parts.backends.store
    short = await asyncio.to_thread(store.take_rate_tokens, buckets,
                                    now=request.app.state.wall_clock())
    if short:
        bucket, wait = max(short.items(), key=lambda item: item[1])
        raise HTTPException(
            429, f"{limits.describe(bucket, found)}; retry in {wait:.1f}s",
            headers={"Retry-After": str(math.ceil(wait))},
        )


@dataclass(frozen=True)
class RateLimits:
    """HOMEO_KEY_RATE_LIMIT (per API key or JWT user) and HOMEO_TENANT_RATE_LIMIT."""

    caller: RateLimit | None = None
    tenant: RateLimit | None = None

    def buckets(self, found: Caller) -> list[tuple[str, int, float]]:
        taken = []
        if self.caller is not None:
            taken.append((found.principal, self.caller.calls, self.caller.period_seconds))
        if self.tenant is not None:
            taken.append((f"tenant:{found.tenant_id}", self.tenant.calls,
                          self.tenant.period_seconds))
        return taken

    def describe(self, bucket: str, found: Caller) -> str:
        if bucket.startswith("tenant:"):
            return (f"tenant {found.tenant_id!r} is over its rate limit"
                    f" HOMEO_TENANT_RATE_LIMIT={self.tenant}")
        return f"{found} is over its rate limit HOMEO_KEY_RATE_LIMIT={self.caller}"


async def tenant(found: Annotated[Caller, Depends(caller)]) -> str:
    """The tenant of the caller's API key or JWT."""
    return found.tenant_id


def requires(role: Role, session: bool = False) -> Any:
    """A route's authorization decision, declared next to it: the route needs
    `role` or a higher one in the caller's tenant, else 403. Declare it as
    `@router.get(..., dependencies=[requires("viewer")])`, or as
    `caller: Annotated[Caller, requires("admin")]` where the route needs the
    caller. The authorization matrix test (tests/api/test_authz_matrix.py) reads
    the decisions from the app's routes (`decision_of`), so a route without one
    fails it. With `session`, the caller may also come from the dashboard's
    session cookie (`session_caller`)."""
    return Depends((_SESSION_NEEDS if session else _NEEDS)[role])


async def record_denial(request: Request, found: Caller, reason: str) -> None:
    """An `access.denied` entry in the caller's tenant's audit log, if it has one."""
    audit: AuditLog | None = request.app.state.audit
    if audit is not None:
        route = request.scope.get("route")
        subject = f"{request.method} {getattr(route, 'path', request.url.path)}"
        await asyncio.to_thread(audit.record, found.tenant_id,
                                Event("access.denied", found.principal, subject,
                                      {"role": found.role, "reason": reason}))


def public() -> Any:
    """The decision that a route is open to anyone, without credentials (probes, docs)."""
    return Depends(_open_to_anyone)


def decision_of(call: Callable[..., Any]) -> str | None:
    """The role a dependency declares a route needs, "public", or None when
    `call` declares nothing."""
    return getattr(call, "homeo_access", None)


def _needs(role: Role, who: Callable[..., Any] = caller) -> Callable[..., Any]:
    # A default, not Annotated: string annotations (from __future__) are read in
    # the module's globals, where `who` is not.
    async def needs_role(request: Request, found: Caller = Depends(who)) -> Caller:
        if not role_allows(found.role, role):
            await record_denial(request, found, f"needs {role}")
            raise HTTPException(
                403, f"{found} has role {found.role}; this needs {role} or above"
                f" (roles: {' < '.join(ROLES)}; `homeo keys create --role {role}`)"
            )
        return found

    needs_role.homeo_access = role  # type: ignore[attr-defined]
    return needs_role


async def _open_to_anyone() -> None:
    """Anyone may call the route: it answers probes or serves documentation."""
    return None


_open_to_anyone.homeo_access = "public"  # type: ignore[attr-defined]
_NEEDS = {role: _needs(role) for role in ROLES}
_SESSION_NEEDS = {role: _needs(role, session_caller) for role in ROLES}


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


T = TypeVar("T")


async def read(app: AppParts, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store read: inline when the store says that is safe, else in a thread."""
    return await read_async(app.backends.store, call, *args, **kwargs)
