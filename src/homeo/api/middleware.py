"""Plain ASGI middleware (no BaseHTTPMiddleware: it buffers streams and is slow).

`RequestID` gives every request an ID, from its `X-Request-ID` header when it
is sane, else a new one; the ID goes back on the response and onto every log
line (and every run) made while serving it, ending with one access line.
It also lands on the request's OpenTelemetry span (FastAPI opens that one
around the middleware, see `create_app`), as `homeo.request_id`.

`RequestTiming` times every request for homeo_http_request_seconds and the
API latency SLOs.

`BodyLimit` refuses a body larger than the limit with 413, by its
Content-Length or, when that is missing, by counting as it arrives.
"""

from __future__ import annotations

import json
import re
import secrets
import time

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from homeo.observe import logs
from homeo.observe.metrics import Metrics

_access = logs.get_logger("homeo.access")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestID:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SANE_ID.match(given) else secrets.token_hex(16)
        scope.setdefault("state", {})["request_id"] = request_id
        trace.get_current_span().set_attribute("homeo.request_id", request_id)
        header = (b"x-request-id", request_id.encode())
        status = 500  # what the client sees if the app dies before answering
        began = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        logs.bind(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _access.info("request", method=scope["method"], path=scope["path"], status=status,
                         ms=round((time.perf_counter() - began) * 1000, 3))
            logs.unbind("request_id")


class BodyTooLarge(Exception):
    """Raised from `receive` once a body passes the limit; `BodyLimit` answers 413."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, send)
            return
        seen = 0
        exceeded = refused = started = False

        async def counted() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started, refused
            if exceeded and not started:
                # The app answered the body we cut off (FastAPI turns any error
                # while reading it into a 400): the client gets the 413 instead.
                started = refused = True
                await self._refuse(scope, send)
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "type": "payload_too_large",
                    "message": f"request body is larger than {self.max_bytes} bytes",
                },
                "request_id": scope.get("state", {}).get("request_id"),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class RequestTiming:
    """Times each request from its arrival to its response headers (a stream's
    first byte, not its end) into `metrics.observe_request`, by the route's
    template (`/v1/runs/{run_id}`, so ids do not become series; `unmatched`
    for a path no route has)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        timed = False

        def observe(status: int) -> None:
            nonlocal timed
            timed = True
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(template, scope["method"], status,
                                         time.perf_counter() - began)

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not timed:
                observe(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if not timed:  # the app died before answering: the client sees a 500
                observe(500)
