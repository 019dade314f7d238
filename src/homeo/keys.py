"""API keys: how a caller proves which tenant it acts for.

A key reads `hk_<id>_<secret>`. The id finds the key's record in the store;
the secret is never stored, only its argon2 hash, so a copy of the database
gives no working key. argon2 is slow on purpose (tens of milliseconds), so
`KeyCheck` verifies a key's secret once, then remembers a SHA-256 of it: later
requests cost one hash and one comparison. It re-reads the record at least
every `revalidate_seconds`, so a key revoked by another process (the CLI, a
second server) stops working within that time.

Concurrent requests with the same key that this process has not verified yet
(after a restart, say) wait for one argon2 check instead of running one each
(single-flight, keyed by the key id and the secret's digest, so a guess never
shares a result with the right secret).

Guessing is throttled by client address, never by key: key ids are public, so
a pause per key would let anyone lock its owner out. Each failed check (a
malformed, unknown, revoked or wrong key) takes a token from the address's
bucket (`failure_burst`, one back every `failure_refill_seconds`); an address
with none left gets `Throttled` (a 429 with Retry-After) before any argon2
work, unless it presents a secret this process has already verified, which is
never refused. The buckets live in the store (its shared rate-limit buckets,
timed by the wall clock), so every server on one database counts the same
failures: spreading guesses over several servers buys an attacker nothing.
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

from homeo.audit import AuditLog, Event
from homeo.store.base import Store, read_async, write_async
from homeo.store.models import ApiKey, KeyRole

PREFIX = "hk"
_SHAPE = re.compile(r"^hk_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})$")
_hasher = PasswordHasher()


class KeyRejected(Exception):
    """The key is malformed, unknown, revoked or wrong. The message says which,
    without echoing the secret."""


@dataclass(frozen=True)
class Caller:
    """Who sent a request: an API key (its id) or a JWT user (its subject),
    with a tenant and a role there."""

    key_id: str  # "" for a JWT user
    tenant_id: str
    role: KeyRole
    user: str = ""  # a JWT user's `sub`; "" for an API key

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def principal(self) -> str:
        """A stable name for rate limits and for who submitted a run."""
        return f"user:{self.tenant_id}:{self.user}" if self.user else f"key:{self.key_id}"

    def __str__(self) -> str:
        return f"user {self.user!r}" if self.user else f"API key hk_{self.key_id}_…"


def create_key(
    store: Store,
    tenant_id: str,
    name: str = "",
    *,
    role: KeyRole = "member",
    now: float | None = None,
    audit: AuditLog | None = None,
    actor: str = "cli",
) -> tuple[str, ApiKey]:
    """Make a key for `tenant_id`. Returns the key itself (shown once, never
    stored) and its record. With `audit`, a `key.created` entry by `actor`
    commits with it."""
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
    with store.atomic():
        store.put_key(record)
        if audit is not None:
            audit.record(tenant_id, Event("key.created", actor, f"key:{key_id}",
                                          {"role": role, "name": name}))
    return f"{PREFIX}_{key_id}_{secret}", record


def revoke_key(store: Store, key_id: str, *, audit: AuditLog | None = None,
               actor: str = "cli") -> ApiKey | None:
    """Revoke the key (None if there is none); with `audit`, a `key.revoked`
    entry commits with it (only when this call revoked it)."""
    with store.atomic():
        before = store.get_key(key_id)  # as committed: this transaction holds the writes
        if before is None:
            return None
        store.revoke_key(key_id)
        if audit is not None and before.active:
            audit.record(before.tenant_id, Event("key.revoked", actor, f"key:{key_id}",
                                                 {"role": before.role}))
    # Read after the commit: a SQLite read inside the transaction would not see it.
    return store.get_key(key_id)


def parse(token: str) -> tuple[str, str]:
    """(id, secret) of a key; KeyRejected if it does not have a key's shape."""
    match = _SHAPE.match(token)
    if match is None:
        raise KeyRejected("malformed API key: homeo keys look like hk_<16 hex>_<secret>")
    return match.group(1), match.group(2)


class Throttled(Exception):
    """A client address failed authentication too often; try again in `retry_after` s."""

    def __init__(self, client: str, retry_after: float) -> None:
        super().__init__(
            f"too many failed API key checks from {client}; retry in {retry_after:.1f}s"
        )
        self.retry_after = retry_after


@dataclass
class _Verified:
    digest: bytes  # SHA-256 of the secret that passed argon2
    secret_hash: str  # the argon2 hash it passed against
    caller: Caller
    checked_at: float


class FailureThrottle:
    """Failed checks per client address, as token buckets in the store shared by
    every process on the database: `burst` failures at once, then one more every
    `refill_seconds`. `now` is the wall clock (every process reads the same)."""

    BUCKET_PREFIX = "auth-failures:"
    # Every this many failures, the buckets that are full again are deleted, so
    # addresses that failed once do not pile up in the store.
    FORGET_EVERY = 256

    def __init__(self, store: Store, burst: int, refill_seconds: float,
                 now: Callable[[], float]) -> None:
        self.store = store
        self.burst = burst
        self.refill_seconds = refill_seconds
        self.now = now
        self.failures = 0

    def _bucket(self, client: str) -> tuple[str, int, float]:
        return (f"{self.BUCKET_PREFIX}{client}", self.burst, self.burst * self.refill_seconds)

    async def wait(self, client: str) -> float:
        """0.0 if `client` may try now, else the seconds until it may."""
        name, calls, period = self._bucket(client)
        return await read_async(self.store, self.store.rate_token_wait, name, calls, period,
                                now=self.now())

    async def failed(self, client: str) -> None:
        """Count one failure; an empty bucket stays empty (nothing more to take)."""
        await write_async(self.store, self.store.take_rate_tokens, [self._bucket(client)],
                          now=self.now())
        self.failures += 1
        if self.failures % self.FORGET_EVERY == 0:
            await write_async(self.store, self.store.forget_rate_buckets, self.BUCKET_PREFIX,
                              self.burst * self.refill_seconds, now=self.now())


class KeyCheck:
    """Turns a presented key into its caller (tenant and role), or raises
    KeyRejected (401) or Throttled (429)."""

    def __init__(
        self,
        store: Store,
        *,
        revalidate_seconds: float = 5.0,
        failure_burst: int = 20,
        failure_refill_seconds: float = 3.0,
        max_remembered: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock` times revalidation (this process only); `wall_clock` the
        failure throttle, whose buckets every process shares."""
        self.store = store
        self.revalidate_seconds = revalidate_seconds
        self.max_remembered = max_remembered
        self.clock = clock
        self.throttle = FailureThrottle(store, failure_burst, failure_refill_seconds, wall_clock)
        self.argon2_checks = 0  # how many secrets this process has run through argon2
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._checking: dict[tuple[str, bytes, str], asyncio.Future[bool]] = {}

    async def caller(self, token: str, client: str = "unknown") -> Caller:
        """The caller `token` names, for a request from address `client`."""
        try:
            key_id, secret = parse(token)
        except KeyRejected:
            await self._refuse_if_throttled(client)
            await self.throttle.failed(client)
            raise
        digest = hashlib.sha256(secret.encode()).digest()
        now = self.clock()
        known = self._verified.get(key_id)
        matches = known is not None and hmac.compare_digest(known.digest, digest)
        if known is not None and matches and now - known.checked_at < self.revalidate_seconds:
            return known.caller
        if not matches:  # a secret already verified is never throttled
            await self._refuse_if_throttled(client)
        try:
            return await self._check(key_id, secret, digest, known if matches else None, now)
        except KeyRejected:
            await self.throttle.failed(client)
            raise

    async def _refuse_if_throttled(self, client: str) -> None:
        wait = await self.throttle.wait(client)
        if wait > 0:
            raise Throttled(client, wait)

    async def _check(self, key_id: str, secret: str, digest: bytes, known: _Verified | None,
                     now: float) -> Caller:
        record = await read_async(self.store, self.store.get_key, key_id)
        if record is None:
            raise KeyRejected(f"unknown API key hk_{key_id}_…")
        if not record.active:
            self._verified.pop(key_id, None)
            raise KeyRejected(f"API key hk_{key_id}_… was revoked")
        if known is None or known.secret_hash != record.secret_hash:
            if not await self._argon2_once(key_id, digest, record.secret_hash, secret):
                raise KeyRejected(f"wrong secret for API key hk_{key_id}_…")
        caller = Caller(record.id, record.tenant_id, record.role)
        self._remember(key_id, _Verified(digest, record.secret_hash, caller, now))
        return caller

    async def _argon2_once(self, key_id: str, digest: bytes, secret_hash: str,
                           secret: str) -> bool:
        """argon2 for this secret, shared by every request that asks meanwhile."""
        flight = (key_id, digest, secret_hash)
        pending = self._checking.get(flight)
        if pending is None:
            self.argon2_checks += 1
            pending = asyncio.ensure_future(
                asyncio.to_thread(_secret_matches, secret_hash, secret))
            self._checking[flight] = pending
            pending.add_done_callback(lambda _: self._checking.pop(flight, None))
        # shield: a waiter that is cancelled (its client left) leaves the check running.
        return await asyncio.shield(pending)

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
