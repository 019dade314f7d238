"""Text the API accepts: no NUL character (U+0000) in any path parameter,
query parameter, JSON body string or form field, on every route.

PostgreSQL cannot store NUL in text (a 500 deep in the store) and SQLite
would keep it for the next reader to trip on, so it is refused at the door,
the same way on every backend: a 422 naming each field, in the shape of any
other invalid request. One app-wide dependency does it (`create_app`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

NUL = "\x00"
PROBLEM = "must not contain NUL (\\u0000) characters; remove them"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def nul_locations(value: Any, where: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    """Where in a decoded JSON value a string (or an object's key) holds NUL."""
    if isinstance(value, str):
        return [where] if NUL in value else []
    found: list[tuple[str | int, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += [(*where, key)] if NUL in key else nul_locations(item, (*where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += nul_locations(item, (*where, index))
    return found


async def reject_nul(request: Request) -> None:
    """422 when any text of the request holds NUL."""
    found: list[tuple[str | int, ...]] = [
        ("path", name) for name, value in request.path_params.items()
        if isinstance(value, str) and NUL in value
    ]
    found += [("query", name) for name, value in request.query_params.multi_items()
              if NUL in name or NUL in value]
    content_type = request.headers.get("content-type", "")
    if request.method in _BODY_METHODS and content_type.startswith(_FORM_TYPES):
        # FastAPI has parsed a form already (the dashboard's, homeo.api.ui), and
        # read the body doing it: its fields are what to check.
        form = await request.form()
        found += [("body", name) for name, value in form.multi_items()
                  if NUL in name or (isinstance(value, str) and NUL in value)]
    elif request.method in _BODY_METHODS:
        body = await request.body()  # FastAPI keeps it: the route does not read it again
        # JSON strings can hold NUL only as the escape \u0000 (a raw NUL byte is
        # invalid JSON, a 400 already), so most bodies are never parsed twice.
        if b"\\u0000" in body:
            try:
                found += nul_locations(json.loads(body), ("body",))
            except (ValueError, RecursionError):
                pass  # not JSON (or nested past the parser): the route's parsing answers 400
    if found:
        raise RequestValidationError(
            [{"type": "string_nul", "loc": where, "msg": PROBLEM, "input": None}
             for where in dict.fromkeys(found)]
        )
