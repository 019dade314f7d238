"""Every error answer has one shape:

    {"error": {"type": "not_found", "message": "no run 'run_x'", "details": [...]},
     "request_id": "..."}
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from homeo.engine.submit import (
    IdempotencyConflict,
    RunAlreadyFinished,
    RunNeedsUser,
    RunNotFound,
    SubmitFailed,
    UnknownAgent,
)
from homeo.api.ui.render import error_page, is_ui
from homeo.crypto.errors import CryptoError
from homeo.engine.waits import RunNotWaiting
from homeo.safety.scrub import scrub, scrub_value
from homeo.store.disk import DiskFull
from homeo.store.sealed import SealedDataError

STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def error_response(
    request: Request,
    status: int,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
    kind: str | None = None,
) -> JSONResponse | HTMLResponse:
    """The error answer; `kind` (the error's type) defaults to the status's. Its
    message and details are scrubbed of secrets: a provider's error may quote
    its key, a validation error the value it refused. Under /ui, a page that
    says the same (homeo.api.ui)."""
    if is_ui(request):
        return error_page(request, status, scrub(message), headers)
    body: dict[str, Any] = {
        "error": {"type": kind or STATUS_TYPES.get(status, "error"), "message": scrub(message)},
        "request_id": getattr(request.state, "request_id", None),
    }
    if details:
        body["error"]["details"] = scrub_value(details)
    return JSONResponse(body, status_code=status, headers=headers)


def _describe(error: dict[str, Any]) -> dict[str, Any]:
    location = ".".join(str(part) for part in error["loc"])
    return {"field": location, "problem": error["msg"]}


async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        where = next(p for p in problems if p.get("type") == "json_invalid")
        position = where.get("ctx", {}).get("error", "")
        return error_response(request, 400, f"request body is not valid JSON: {position}".strip())
    details = [_describe(problem) for problem in problems]
    summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details)
    return error_response(request, 422, f"invalid request: {summary}", details)


async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
    message = error.detail if isinstance(error.detail, str) else json.dumps(error.detail)
    return error_response(request, error.status_code, message, headers=error.headers)


async def _not_found(request: Request, error: LookupError) -> JSONResponse:
    return error_response(request, 404, str(error))


async def _unprocessable(request: Request, error: Exception) -> JSONResponse:
    return error_response(request, 422, str(error))


async def _conflict(request: Request, error: Exception) -> JSONResponse:
    return error_response(request, 409, str(error))


async def _unavailable(request: Request, error: Exception) -> JSONResponse:
    return error_response(request, 503, str(error))


async def _insufficient_storage(request: Request, error: Exception) -> JSONResponse:
    """The data directory's disk is below HOMEO_MIN_FREE_DISK: no new runs."""
    return error_response(request, 507, str(error), kind="insufficient_storage")


async def _key_unavailable(request: Request, error: Exception) -> JSONResponse:
    """A sensitive tenant's data and no key (or the wrong one) to open or seal it."""
    return error_response(request, 503, str(error), kind="encryption_key_unavailable")


async def _unhandled(request: Request, error: Exception) -> JSONResponse:
    """A bug, not the caller's fault: still the JSON shape, never Starlette's
    plain-text 500. Starlette logs the traceback after this answers."""
    request_id = getattr(request.state, "request_id", None)
    message = (f"internal error ({type(error).__name__}) while serving this request;"
               " the server log has the details under its request_id")
    headers = {"x-request-id": request_id} if request_id else None
    return error_response(request, 500, message, headers=headers)


def install(app: FastAPI) -> None:
    # Exception: Starlette's outermost middleware calls this for anything unhandled.
    app.add_exception_handler(Exception, _unhandled)
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(UnknownAgent, _not_found)  # type: ignore[arg-type]
    app.add_exception_handler(RunNotFound, _not_found)  # type: ignore[arg-type]
    app.add_exception_handler(RunAlreadyFinished, _conflict)  # type: ignore[arg-type]
    app.add_exception_handler(IdempotencyConflict, _conflict)  # type: ignore[arg-type]
    app.add_exception_handler(RunNotWaiting, _conflict)  # type: ignore[arg-type]
    app.add_exception_handler(RunNeedsUser, _unprocessable)  # type: ignore[arg-type]
    app.add_exception_handler(SubmitFailed, _unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(DiskFull, _insufficient_storage)  # type: ignore[arg-type]
    app.add_exception_handler(CryptoError, _key_unavailable)
    app.add_exception_handler(SealedDataError, _key_unavailable)
