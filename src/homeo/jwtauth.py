"""Users who sign in with a JWT from a configured issuer: who they are, their
tenant and their role come from the token's claims.

HS256/384/512 tokens are checked with a shared secret; RS*, PS*, ES* and
EdDSA tokens with public keys from a JWKS (a file, or a URL fetched over
HTTP), cached, refreshed every `jwks_refresh_seconds`, and fetched again when
a token names a key id the cache does not hold (the issuer rotated its keys),
at most once every `refetch_seconds` so random key ids cannot make us hammer
the issuer. Which key checks a token comes from the server's configuration,
never from the token: an HS256 token is checked with the secret only, so a
token "signed" with the issuer's public key as an HMAC secret (RS/HS
confusion) fails, and an algorithm the configuration does not list is refused
before any key is looked at. PyJWT verifies the signatures and the issuer and
audience; expiry and not-before are checked here against an injected clock.

Every refusal is a `TokenRejected` whose message says which check failed.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from jwt import PyJWK
from jwt.exceptions import (
    DecodeError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidKeyError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWKError,
    PyJWTError,
)

from homeo.config import Settings
from homeo.keys import Caller
from homeo.store.models import ROLES

# Which kind of JWK (`kty`) verifies which algorithms.
_FAMILIES = {"RSA": ("RS", "PS"), "EC": ("ES",), "OKP": ("EdDSA",)}
_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
JWKS_MAX_BYTES = 1_000_000


class TokenRejected(Exception):
    """The JWT is refused; the message says why, without echoing the token."""


class JwksUnavailable(Exception):
    """The JWKS cannot be read and no copy of it is cached."""


@dataclass(frozen=True)
class JwtConfig:
    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    secret: str = ""  # HS* tokens
    jwks: str = ""  # a JWKS file, or an http(s) URL serving one
    tenant_claim: str = "tenant"
    role_claim: str = "role"
    leeway_seconds: float = 30.0
    jwks_refresh_seconds: float = 300.0


def jwt_config(settings: Settings) -> JwtConfig | None:
    """The JWT sign-in `settings` configure; None when they configure none."""
    if not settings.jwt_enabled():
        return None
    return JwtConfig(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        algorithms=tuple(settings.jwt_algorithms.split(",")),
        secret=settings.jwt_secret.get_secret_value(),
        jwks=settings.jwt_jwks,
        tenant_claim=settings.jwt_tenant_claim,
        role_claim=settings.jwt_role_claim,
        leeway_seconds=settings.jwt_leeway_seconds,
        jwks_refresh_seconds=settings.jwt_jwks_refresh_seconds,
    )


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts: a JWT, not an API key (`hk_...`)."""
    return token.count(".") == 2 and not token.startswith("hk_")


class Jwks:
    """The public keys of a JWKS source, by key id, cached."""

    def __init__(self, source: str, *, refresh_seconds: float = 300.0,
                 refetch_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.refresh_seconds = refresh_seconds
        self.refetch_seconds = refetch_seconds
        self.clock = clock
        self.fetches = 0  # how many times the source was read
        self._keys: dict[str, PyJWK] | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None, algorithm: str) -> PyJWK:
        """The key that checks a token with header `kid` and `algorithm`."""
        keys = await self._current()
        if kid is None:
            fitting = [key for key in keys.values() if _fits(key, algorithm)]
            if len(fitting) == 1:
                return fitting[0]
            raise TokenRejected(
                f"JWT header has no `kid`, and the JWKS holds {len(fitting)} {algorithm} keys:"
                " the issuer must name the key it signed with"
            )
        found = keys.get(kid)
        if found is None and self.clock() - self._fetched_at >= self.refetch_seconds:
            keys = await self._fetch(stale=self._fetched_at)  # the issuer may have rotated
            found = keys.get(kid)
        if found is None:
            raise TokenRejected(f"JWT key id {kid[:64]!r} is not in the JWKS ({self.source})")
        if not _fits(found, algorithm):
            raise TokenRejected(
                f"JWT key {kid[:64]!r} ({found.key_type}, {found.algorithm_name}) cannot"
                f" check a {algorithm} token"
            )
        return found

    async def _current(self) -> dict[str, PyJWK]:
        if self._keys is not None and self.clock() - self._fetched_at < self.refresh_seconds:
            return self._keys
        return await self._fetch(stale=self._fetched_at)

    async def _fetch(self, stale: float) -> dict[str, PyJWK]:
        async with self._lock:
            if self._keys is not None and self._fetched_at != stale:
                return self._keys  # another request fetched while this one waited
            try:
                document = await self._read()
                keys = _parse_jwks(document, self.source)
            except JwksUnavailable:
                if self._keys is None:
                    raise
                # Keep the keys we have; try the source again after refetch_seconds.
                self._fetched_at = self.clock() - self.refresh_seconds + self.refetch_seconds
                return self._keys
            self.fetches += 1
            self._keys, self._fetched_at = keys, self.clock()
            return keys

    async def _read(self) -> Any:
        try:
            if self.source.startswith(("http://", "https://")):
                async with httpx.AsyncClient(timeout=10.0) as http:
                    response = await http.get(self.source)
                if response.status_code != 200:
                    raise JwksUnavailable(
                        f"the JWKS at {self.source} answered HTTP {response.status_code}")
                body = response.content
            else:
                body = await asyncio.to_thread(Path(self.source).read_bytes)
            if len(body) > JWKS_MAX_BYTES:
                raise JwksUnavailable(f"the JWKS at {self.source} is over {JWKS_MAX_BYTES} bytes")
            return json.loads(body)
        except (httpx.HTTPError, OSError, ValueError) as error:
            raise JwksUnavailable(f"cannot read the JWKS at {self.source}: {error}") from None


def _parse_jwks(document: Any, source: str) -> dict[str, PyJWK]:
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksUnavailable(f"the JWKS at {source} has no `keys` list")
    keys: dict[str, PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            key = PyJWK(entry)
        except PyJWKError:
            continue  # a kind of key PyJWT cannot use: the issuer may publish others too
        keys[str(entry.get("kid", ""))] = key
    return keys


def _fits(key: PyJWK, algorithm: str) -> bool:
    """Whether `key` may check a token signed with `algorithm`."""
    declared = key._jwk_data.get("alg")
    if declared is not None:
        return declared == algorithm
    if key.key_type == "EC":  # its curve fixes the algorithm (P-256: ES256)
        return key.algorithm_name == algorithm
    return algorithm.startswith(_FAMILIES.get(key.key_type, ()))


class JwtCheck:
    """Turns a JWT into its caller, or raises TokenRejected (401) or
    JwksUnavailable (503). `now` is wall-clock time, for expiry."""

    def __init__(self, config: JwtConfig, *, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], float] = time.time) -> None:
        self.config = config
        self.now = now
        self.jwks = (Jwks(config.jwks, refresh_seconds=config.jwks_refresh_seconds, clock=clock)
                     if config.jwks else None)

    async def caller(self, token: str) -> Caller:
        config = self.config
        try:
            header = jwt.get_unverified_header(token)
        except DecodeError as error:
            raise TokenRejected(f"malformed JWT: {error}") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm.lower() == "none":
            raise TokenRejected("JWT with `alg: none` is refused: tokens must be signed")
        if algorithm not in config.algorithms:
            raise TokenRejected(
                f"JWT algorithm {algorithm[:16]!r} is not allowed here; this server accepts"
                f" {', '.join(config.algorithms)} (HOMEO_JWT_ALGORITHMS)"
            )
        key: Any
        if algorithm.startswith("HS"):
            if not config.secret:
                raise TokenRejected(f"JWT algorithm {algorithm} needs HOMEO_JWT_SECRET, unset here")
            key = config.secret.encode()
        else:
            if self.jwks is None:
                raise TokenRejected(f"JWT algorithm {algorithm} needs HOMEO_JWT_JWKS, unset here")
            kid = header.get("kid")
            key = (await self.jwks.key_for(kid if isinstance(kid, str) else None, algorithm)).key
        claims = self._verified_claims(token, key, algorithm)
        self._check_times(claims)
        return Caller(key_id="", tenant_id=self._tenant(claims), role=self._role(claims),
                      user=self._subject(claims))

    def _verified_claims(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        config = self.config
        try:
            return jwt.decode(
                token, key, algorithms=[algorithm], audience=config.audience,
                issuer=config.issuer,
                options={"require": ["exp", "iss", "aud", "sub"], "verify_exp": False,
                         "verify_nbf": False, "verify_iat": False},
            )
        except InvalidSignatureError:
            raise TokenRejected("JWT signature does not verify with the configured key") from None
        except MissingRequiredClaimError as error:
            raise TokenRejected(f"JWT has no `{error.claim}` claim") from None
        except InvalidIssuerError:
            raise TokenRejected(
                f"JWT issuer is not {config.issuer!r} (HOMEO_JWT_ISSUER)") from None
        except InvalidAudienceError:
            raise TokenRejected(
                f"JWT audience does not include {config.audience!r} (HOMEO_JWT_AUDIENCE)"
            ) from None
        except InvalidKeyError as error:
            raise TokenRejected(f"JWT cannot be checked with the configured key: {error}") from None
        except DecodeError as error:
            raise TokenRejected(f"malformed JWT: {error}") from None
        except PyJWTError as error:
            raise TokenRejected(f"invalid JWT: {error}") from None

    def _check_times(self, claims: dict[str, Any]) -> None:
        now, leeway = self.now(), self.config.leeway_seconds
        for claim in ("exp", "nbf", "iat"):
            value = claims.get(claim)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)):
                raise TokenRejected(f"JWT `{claim}` claim must be a number of epoch seconds")
        if now > claims["exp"] + leeway:
            raise TokenRejected(f"JWT expired {now - claims['exp']:.0f}s ago; sign in again")
        for claim in ("nbf", "iat"):
            if claim in claims and now + leeway < claims[claim]:
                raise TokenRejected(
                    f"JWT is not valid yet (`{claim}` is {claims[claim] - now:.0f}s ahead);"
                    " check the issuer's and this server's clocks")

    def _tenant(self, claims: dict[str, Any]) -> str:
        name = self.config.tenant_claim
        value = claims.get(name)
        if value is None or value == "":
            raise TokenRejected(
                f"JWT has no `{name}` claim naming the user's tenant (HOMEO_JWT_TENANT_CLAIM)")
        if not isinstance(value, str) or not _TENANT.match(value):
            raise TokenRejected(
                f"JWT `{name}` claim is not a tenant name (1-64 of A-Z a-z 0-9 _ . -)")
        return value

    def _role(self, claims: dict[str, Any]) -> Any:
        name = self.config.role_claim
        value = claims.get(name)
        if value is None:
            raise TokenRejected(f"JWT has no `{name}` claim; it must name one of"
                                f" {', '.join(ROLES)} (HOMEO_JWT_ROLE_CLAIM)")
        given = value if isinstance(value, list) else [value]
        known = [role for role in ROLES if role in given]  # lowest first
        if not known:
            shown = ", ".join(repr(str(item)[:32]) for item in given[:5])
            raise TokenRejected(f"JWT role {shown} is unknown; roles are {', '.join(ROLES)}")
        return known[-1]

    def _subject(self, claims: dict[str, Any]) -> str:
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > 256:
            raise TokenRejected("JWT `sub` claim must be a text of 1-256 characters")
        return subject
