"""`POST /v1/safety/check`: every guard's verdict on a text, for trying them.

The guards run in a thread (they are CPU work: the encoder, spaCy) and load
their models on the first request, once per app. A guard that cannot load
(its extra is not installed, its model not trained) is a 503 saying what to
install or run."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from homeo.api.deps import requires
from homeo.api.errors import error_response
from homeo.audit import AuditLog, safety_event
from homeo.safety import guards as safety_guards
from homeo.safety.verdict import Guard

router = APIRouter(prefix="/v1/safety", tags=["safety"])

MAX_TEXT_CHARS = 100_000

_building = threading.Lock()


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    guards: list[str] = Field(default=list(safety_guards.GUARD_NAMES), min_length=1)
    # How the injection classifier reads the text: a user's or model's text, or a
    # tool's output or retrieved document (its document head).
    reading: Literal["input", "document"] = "input"


async def note_screening(request: Request, tenant_id: str, actor: str, subject: str,
                         screening: dict[str, Any]) -> None:
    """What the guards did to a request's text (a Screening's JSON with an
    action): counted in the metrics and, with an audit log, an audit event."""
    request.app.state.parts.metrics.count_screening(tenant_id, screening)
    audit: AuditLog | None = request.app.state.audit
    if audit is not None:
        await asyncio.to_thread(audit.record, tenant_id,
                                safety_event(actor, subject, screening))


def _guards(request: Request, names: list[str], reading: str) -> list[Guard]:
    """The app's guards of these names, built once per app (the injection guard
    once per reading; the others read every text alike)."""
    keys = [(name, reading if name == "injection" else "") for name in names]
    with _building:
        built: dict[tuple[str, str], Guard] = getattr(request.app.state, "safety_guards",
                                                      None) or {}
        request.app.state.safety_guards = built
        for key in keys:
            if key not in built:
                built[key] = safety_guards.build([key[0]], reading)[0]
        return [built[key] for key in keys]


@router.post("/check", response_model=None, dependencies=[requires("member")])
async def check(body: CheckRequest, request: Request) -> JSONResponse:
    unknown = [name for name in body.guards if name not in safety_guards.GUARD_NAMES]
    if unknown:
        return error_response(request, 400, f"unknown guard {unknown[0]!r}: choose from "
                              f"{', '.join(safety_guards.GUARD_NAMES)}")

    def run() -> dict[str, Any]:
        return safety_guards.check(_guards(request, body.guards, body.reading),
                                   body.text).to_json()

    try:
        answer = await asyncio.to_thread(run)
    except safety_guards.GuardUnavailable as error:
        return error_response(request, 503, str(error))
    return JSONResponse(answer)
