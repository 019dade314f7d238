"""The SDK's errors. Every answer of 400 or above raises an `APIError`
subclass that carries the API's message, its error type and the request id
(quote it when asking about a failed request: the server log has it)."""

from __future__ import annotations

from typing import Any

import httpx


class HomeoError(Exception):
    """Anything the SDK raises on purpose."""


class APIError(HomeoError):
    def __init__(self, status: int, message: str, *, kind: str | None = None,
                 request_id: str | None = None, details: list[Any] | None = None) -> None:
        self.status = status
        self.message = message
        self.kind = kind
        self.request_id = request_id
        self.details = details or []
        where = f" [request {request_id}]" if request_id else ""
        super().__init__(f"{status} {message}{where}")


class InvalidRequest(APIError):
    """400, 413, 415 or 422: the request itself is wrong; `details` names the fields."""


class Unauthorized(APIError):
    """401: no key, or one that is unknown or revoked."""


class Forbidden(APIError):
    """403: the key's role may not do this (an admin key is needed)."""


class NotFound(APIError):
    """404: no such thing in the key's tenant (another tenant's is not found either)."""


class Conflict(APIError):
    """409: the thing is not in a state that allows this (a run already ended,
    a run that waits for something else, an idempotency key reused)."""


class Gone(APIError):
    """410: retention pruned what was asked for."""


class RateLimited(APIError):
    """429, after the client's retries: `retry_after` is the server's advice in seconds."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """500 or above (503 after the client's retries)."""


class WaitTimeout(HomeoError, TimeoutError):
    """`wait()` gave up: the run was still not done at the deadline."""

    def __init__(self, run_id: str, status: str, timeout: float) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id} is still {status} after {timeout:g}s;"
                         " wait again, or cancel it")


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    410: Gone, 413: InvalidRequest, 415: InvalidRequest, 422: InvalidRequest, 429: RateLimited,
}


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (the delta form; an HTTP date is read too), if sent."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime
        from datetime import UTC, datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def error_of(response: httpx.Response) -> APIError:
    """The error for an answer of 400 or above, from homeo's error body
    ({"error": {"type", "message", "details"?}, "request_id"})."""
    status = response.status_code
    request_id = response.headers.get("x-request-id")
    kind, details = None, None
    message = response.text or response.reason_phrase
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        message = str(error.get("message", message))
        kind = error.get("type")
        details = error.get("details")
        request_id = body.get("request_id") or request_id
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    if cls is RateLimited:
        return RateLimited(status, message, kind=kind, request_id=request_id, details=details,
                           retry_after=retry_after(response))
    return cls(status, message, kind=kind, request_id=request_id, details=details)
