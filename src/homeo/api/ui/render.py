"""Pages and error pages of the dashboard, rendered from the package's
templates with autoescaping, and sent with headers that keep them from being
framed, sniffed, cached or given scripts from elsewhere."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader

from homeo.api.deps import SESSION_COOKIE

UI_PATH = "/ui"
HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_PATH = f"{UI_PATH}/static"
# Scripts (a run page's live.js), styles and event streams only from this
# server; no inline script, no other host.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
                               " img-src 'self'; connect-src 'self'; form-action 'self';"
                               " frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TITLES = {400: "Bad request", 401: "Sign in needed", 403: "Not allowed", 404: "Not found",
          409: "Conflict", 410: "Gone", 422: "Invalid request", 429: "Too many requests",
          500: "Internal error", 503: "Unavailable"}

_templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True)


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _epoch(seconds: float | None) -> str:
    return "" if seconds is None else _when(datetime.fromtimestamp(seconds, timezone.utc))


_templates.filters["when"] = _when
_templates.filters["epoch"] = _epoch


def is_ui(request: Request) -> bool:
    path = request.url.path
    return path == UI_PATH or path.startswith(f"{UI_PATH}/")


def csrf_token(session: str) -> str:
    """The token every form of a session carries: only someone holding the
    session's secret (the HttpOnly cookie's key or JWT) can compute it."""
    return hmac.new(b"homeo-ui-csrf", session.encode(), hashlib.sha256).hexdigest()


def page(request: Request, template: str, code: int = 200, **values: Any) -> HTMLResponse:
    session = request.cookies.get(SESSION_COOKIE, "")
    html = _templates.get_template(template).render(
        static=STATIC_PATH, ui=UI_PATH, csrf=csrf_token(session) if session else "",
        **values)
    return HTMLResponse(html, status_code=code, headers=HEADERS)


def error_page(request: Request, status: int, message: str,
               headers: dict[str, str] | None = None) -> HTMLResponse:
    """An error as a page: what went wrong and, for 401, where to sign in."""
    answer = page(request, "error.html", code=status, status_code=status,
                  title=TITLES.get(status, "Error"), message=message,
                  request_id=getattr(request.state, "request_id", None))
    if headers:
        # A browser would show its own dialog for a Bearer challenge; the page says it.
        answer.headers.update({k: v for k, v in headers.items()
                               if k.lower() != "www-authenticate"})
    return answer
