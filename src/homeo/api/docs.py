"""/openapi.json, /docs (Swagger UI) and /redoc, served with their JavaScript
and CSS from this server, so they work offline; each route declares that it
is public, as every route declares its access (homeo.api.deps). The assets are the ones the
`fastapi-offline` package ships; FastAPI's defaults load them from a CDN. Each
page's Content-Security-Policy allows scripts only from this server and the
page's own inline script (by its SHA-256), and connections only to it."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from homeo.api.deps import public

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_PATH = "/docs-assets"
OPENAPI_PATH = "/openapi.json"


def install(app: FastAPI) -> None:
    """Serve /openapi.json, and /docs and /redoc from local assets. `app` must
    have been made with `openapi_url=None, docs_url=None, redoc_url=None`
    (FastAPI's own pages use a CDN, and its /openapi.json declares no access)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")
    redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get(OPENAPI_PATH, include_in_schema=False, dependencies=[public()])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[public()])
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _locked(get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI_PATH}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect}",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        ))

    @app.get(redirect, include_in_schema=False, dependencies=[public()])
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False, dependencies=[public()])
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _locked(get_redoc_html(
            openapi_url=f"{root}{OPENAPI_PATH}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        ))


def _locked(page: HTMLResponse) -> HTMLResponse:
    """The page with a policy naming its inline scripts by hash. Styles may be
    inline: Swagger UI and ReDoc set them from their scripts."""
    inline = re.findall(rb"<script>(.*?)</script>", page.body, re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'"
                      for s in inline)
    page.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; font-src 'self' data:; connect-src 'self';"
        " worker-src 'self' blob:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    return page
