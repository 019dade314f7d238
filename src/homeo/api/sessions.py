"""The dashboard's server-side sessions. Signing in checks an API key or JWT
once, then gives the browser a random secret; the store keeps only its SHA-256
(the `ui_sessions` row) with the caller's tenant and role and when it ends
(HOMEO_UI_SESSION_HOURS). Signing out revokes the row, so a copied cookie is
refused at once; so is a session whose API key was revoked since."""

from __future__ import annotations

import hashlib
import secrets

from homeo.keys import Caller
from homeo.store.base import Store
from homeo.store.models import UiSession

SECRET_BYTES = 32


class SessionEnded(Exception):
    """The cookie names no live session; the message says why and what to do."""


def session_id(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def open_session(store: Store, found: Caller, *, hours: float, now: float) -> str:
    """A new session for `found`; returns the secret the cookie carries."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    store.put_ui_session(UiSession(id=session_id(secret), tenant_id=found.tenant_id,
                                   key_id=found.key_id, user_id=found.user, role=found.role,
                                   created_at=now, expires_at=now + hours * 3600))
    return secret


def session_caller(store: Store, secret: str, *, now: float) -> Caller:
    """The caller a live session names. A session signed in with an API key
    lasts only while the key is active, and takes the key's role as it is now."""
    session = store.get_ui_session(session_id(secret))
    if session is None:
        raise SessionEnded("this sign-in is unknown here: sign in again at /ui")
    if session.revoked_at is not None:
        raise SessionEnded("you signed out of this session: sign in again at /ui")
    if not session.live(now):
        raise SessionEnded("this sign-in expired (HOMEO_UI_SESSION_HOURS): sign in again at /ui")
    if not session.key_id:
        return Caller("", session.tenant_id, session.role, user=session.user_id)
    key = store.get_key(session.key_id)
    if key is None or not key.active:
        store.revoke_ui_session(session.id, now=now)
        raise SessionEnded(f"API key hk_{session.key_id}_… was revoked: sign in again at /ui"
                           " with an active key")
    return Caller(key.id, key.tenant_id, key.role)


def end_session(store: Store, secret: str, *, now: float) -> bool:
    return store.revoke_ui_session(session_id(secret), now=now)
