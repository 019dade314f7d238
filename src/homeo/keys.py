"""API keys: how a caller proves which tenant it acts for.

A key reads `hk_<id>_<secret>`. The id finds the key's record in the store;
the secret is never stored, only its argon2 hash, so a copy of the database
gives no working key. argon2 is slow on purpose (tens of milliseconds), so
`KeyCheck` verifies a key's secret once, then remembers a SHA-256 of it: later
requests cost one hash and one comparison. It re-reads the record at least
every `revalidate_seconds`, so a key revoked by another process (the CLI, a
second server) stops working within that time. A wrong secret for a real key
id is answered without argon2 for `failure_pause_seconds` afterwards, so
guessing at one key cannot keep a core busy.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from homeo.store.base import Store, read_async
from homeo.store.models import ApiKey, KeyRole

PREFIX = "hk"
_SHAPE = re.compile(r"^hk_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})$")
_hasher = PasswordHasher()


class KeyRejected(Exception):
    """The key is malformed, unknown, revoked or wrong. The message says which,
    without echoing the secret."""


@dataclass(frozen=True)
class Caller:
    """Who sent a request: its key's id, tenant and role."""

    key_id: str
    tenant_id: str
    role: KeyRole

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def create_key(
    store: Store,
    tenant_id: str,
    name: str = "",
    *,
    role: KeyRole = "member",
    now: float | None = None,
) -> tuple[str, ApiKey]:
    """Make a key for `tenant_id`. Returns the key itself (shown once, never
    stored) and its record."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = ApiKey(
        id=key_id,
        tenant_id=tenant_id,
        name=name,
        role=role,
        secret_hash=_hasher.hash(secret),
        created_at=time.time() if now is None else now,
    )
    store.put_key(record)
    return f"{PREFIX}_{key_id}_{secret}", record


def parse(token: str) -> tuple[str, str]:
    """(id, secret) of a key; KeyRejected if it does not have a key's shape."""
    match = _SHAPE.match(token)
    if match is None:
        raise KeyRejected("malformed API key: homeo keys look like hk_<16 hex>_<secret>")
    return match.group(1), match.group(2)


@dataclass
class _Verified:
    digest: bytes  # SHA-256 of the secret that passed argon2
    secret_hash: str  # the argon2 hash it passed against
    caller: Caller
    checked_at: float


class KeyCheck:
    """Turns a presented key into its caller (tenant and role), or raises KeyRejected."""

    def __init__(
        self,
        store: Store,
        *,
        revalidate_seconds: float = 5.0,
        failure_pause_seconds: float = 1.0,
        max_remembered: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.revalidate_seconds = revalidate_seconds
        self.failure_pause_seconds = failure_pause_seconds
        self.max_remembered = max_remembered
        self.clock = clock
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._failed_at: OrderedDict[str, float] = OrderedDict()  # key id -> last wrong secret

    async def caller(self, token: str) -> Caller:
        key_id, secret = parse(token)
        digest = hashlib.sha256(secret.encode()).digest()
        now = self.clock()
        known = self._verified.get(key_id)
        matches = known is not None and hmac.compare_digest(known.digest, digest)
        if known is not None and matches and now - known.checked_at < self.revalidate_seconds:
            return known.caller
        record = await read_async(self.store, self.store.get_key, key_id)
        if record is None:
            raise KeyRejected(f"unknown API key hk_{key_id}_…")
        if not record.active:
            self._verified.pop(key_id, None)
            raise KeyRejected(f"API key hk_{key_id}_… was revoked")
        verified_before = known is not None and matches and known.secret_hash == record.secret_hash
        if not verified_before:
            failed_at = self._failed_at.get(key_id)
            if failed_at is not None and now - failed_at < self.failure_pause_seconds:
                raise KeyRejected(f"wrong secret for API key hk_{key_id}_… (checks of this"
                                  f" key pause {self.failure_pause_seconds:g}s after a failure)")
            if not await asyncio.to_thread(_secret_matches, record.secret_hash, secret):
                self._failed_at[key_id] = now
                self._failed_at.move_to_end(key_id)
                while len(self._failed_at) > self.max_remembered:
                    self._failed_at.popitem(last=False)
                raise KeyRejected(f"wrong secret for API key hk_{key_id}_…")
        caller = Caller(record.id, record.tenant_id, record.role)
        self._remember(key_id, _Verified(digest, record.secret_hash, caller, now))
        return caller

    def _remember(self, key_id: str, verified: _Verified) -> None:
        self._verified[key_id] = verified
        self._verified.move_to_end(key_id)
        while len(self._verified) > self.max_remembered:
            self._verified.popitem(last=False)


def _secret_matches(secret_hash: str, secret: str) -> bool:
    try:
        return _hasher.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False
