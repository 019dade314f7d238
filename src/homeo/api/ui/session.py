"""Signing in and out of the dashboard. Signing in checks the API key or JWT
exactly as the API does, then opens a server-side session (homeo.api.sessions)
whose secret goes in an HttpOnly, SameSite=Strict cookie scoped to /ui:
scripts cannot read it, other sites' requests never carry it, and the key
itself never leaves the form. Signing out revokes the session."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from homeo.api.deps import SESSION_COOKIE, caller_of, public
from homeo.api.sessions import end_session, open_session
from homeo.api.ui.render import UI_PATH, page

router = APIRouter(prefix=UI_PATH, include_in_schema=False)
MAX_TOKEN_CHARS = 8192


@router.get("", dependencies=[public()])
async def sign_in_page(request: Request) -> HTMLResponse:
    return page(request, "sign_in.html",
                signed_in=bool(request.cookies.get(SESSION_COOKIE)))


@router.post("/sign-in", dependencies=[public()])
async def sign_in(request: Request,
                  token: Annotated[str, Form(max_length=MAX_TOKEN_CHARS)] = "") -> Response:
    same_origin(request)
    token = token.strip()
    if not token:
        return page(request, "sign_in.html", code=400,
                    error="enter an API key (hk_...) or a JWT")
    try:
        found = await caller_of(request, token)
    except HTTPException as refused:
        if refused.status_code != 401:
            raise
        return page(request, "sign_in.html", code=401, error=str(refused.detail))
    store = request.app.state.parts.backends.store
    secret = await asyncio.to_thread(open_session, store, found, now=request.app.state.wall_clock(),
                                     hours=request.app.state.parts.settings.ui_session_hours)
    answer = RedirectResponse(f"{UI_PATH}/runs", status_code=303)
    answer.set_cookie(SESSION_COOKIE, secret, path=UI_PATH, httponly=True, samesite="strict",
                      secure=request.url.scheme == "https")
    return answer


@router.post("/sign-out", dependencies=[public()])
async def sign_out(request: Request) -> Response:
    same_origin(request)
    secret = request.cookies.get(SESSION_COOKIE, "").strip()
    if secret:
        await asyncio.to_thread(end_session, request.app.state.parts.backends.store, secret,
                                now=request.app.state.wall_clock())
    answer = RedirectResponse(UI_PATH, status_code=303)
    answer.delete_cookie(SESSION_COOKIE, path=UI_PATH, httponly=True, samesite="strict",
                         secure=request.url.scheme == "https")
    return answer


def same_origin(request: Request) -> None:
    """Refuse a form posted from another site (browsers send Origin on every
    POST): signing a browser in or out is not another site's to do."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin != f"{request.url.scheme}://{host}":
        raise HTTPException(403, f"a form from {origin} may not post here;"
                                 f" use the dashboard's own pages at {UI_PATH}")
