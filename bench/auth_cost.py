"""Authentication and rate-limit cost per request, in-process (no HTTP), each
beside a baseline measured in the same run:

- an API key this process has verified (homeo's `KeyCheck.caller`: parse, a
  SHA-256 of the secret, a constant-time compare, the cache) against the bare
  SHA-256 and compare;
- a JWT user (`JwtCheck.caller`: header, algorithm policy, key by kid from the
  cached JWKS, PyJWT's signature and issuer/audience checks, expiry, tenant and
  role claims) against PyJWT's `jwt.decode` of the same token alone, for
  HS256, RS256, ES256 and EdDSA;
- the shared rate limit (`Store.take_rate_tokens`, a key bucket and a tenant
  bucket in one transaction) on SQLite and PostgreSQL against the in-process
  token bucket (`homeo.ratelimit.RateLimiter`) that a server kept before;
- a failed authentication counted against its client address
  (`FailureThrottle.wait` + `failed`, one shared bucket read and one write on
  SQLite and PostgreSQL) against the same in-process token bucket;
- an audit append and the verification of each entry against ML-DSA-65
  signing (twice: the entry and the head) and verifying alone;
- scrubbing secrets from a log line's text (`homeo.safety.scrub`) against
  rendering the same line as JSON.

    .venv/bin/python bench/auth_cost.py
    .venv/bin/python bench/auth_cost.py --calls 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import jwt
from _common import POSTGRES_URL, machine, postgres_problem, postgres_schema, table
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from homeo.backends import open_backends  # noqa: E402
from homeo.jwtauth import JwtCheck, JwtConfig  # noqa: E402
from homeo.keys import FailureThrottle, KeyCheck, create_key, parse  # noqa: E402
from homeo.ratelimit import RateLimiter, parse_rate_limit  # noqa: E402

SECRET = "bench-" + "s" * 40
ISSUER, AUDIENCE = "https://login.example.com/", "homeo"


def per_call_us(call: Callable[[], Any], calls: int, rounds: int) -> float:
    """Median over `rounds` of the mean microseconds per call."""
    results = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(calls):
            call()
        results.append((time.perf_counter() - began) / calls * 1e6)
    return statistics.median(results)


def per_async_call_us(call: Callable[[], Any], calls: int, rounds: int) -> float:
    async def timed() -> float:
        began = time.perf_counter()
        for _ in range(calls):
            await call()
        return (time.perf_counter() - began) / calls * 1e6

    return statistics.median(asyncio.run(timed()) for _ in range(rounds))


def api_key_rows(folder: Path, calls: int, rounds: int) -> list[list[str]]:
    backends = open_backends(f"sqlite:///{folder / 'keys.db'}")
    try:
        key, _ = create_key(backends.store, "acme")
        check = KeyCheck(backends.store, revalidate_seconds=3600)
        asyncio.run(check.caller(key))  # verified once with argon2, then cached
        homeo = per_async_call_us(lambda: check.caller(key), calls, rounds)
        _, secret = parse(key)
        digest = hashlib.sha256(secret.encode()).digest()
        bare = per_call_us(lambda: hmac.compare_digest(
            hashlib.sha256(secret.encode()).digest(), digest), calls, rounds)
    finally:
        backends.close()
    return [["API key (verified before)", f"{bare:.1f}", f"{homeo:.1f}", f"{homeo - bare:+.1f}"]]


def jwt_rows(folder: Path, calls: int, rounds: int) -> list[list[str]]:
    keys = {"RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": ec.generate_private_key(ec.SECP256R1()),
            "EdDSA": ed25519.Ed25519PrivateKey.generate()}
    kinds = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}
    jwks = folder / "jwks.json"
    jwks.write_text(json.dumps({"keys": [
        {**kinds[alg].to_jwk(private.public_key(), as_dict=True), "kid": alg}
        for alg, private in keys.items()]}))
    check = JwtCheck(JwtConfig(issuer=ISSUER, audience=AUDIENCE,
                               algorithms=("HS256", "RS256", "ES256", "EdDSA"), secret=SECRET,
                               jwks=str(jwks)))
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "tenant": "acme",
              "role": "member", "exp": int(time.time()) + 3600}
    rows = []
    for algorithm in ("HS256", "RS256", "ES256", "EdDSA"):
        signing: Any = SECRET if algorithm == "HS256" else keys[algorithm]
        token = jwt.encode(claims, signing, algorithm=algorithm, headers={"kid": algorithm})
        verifying: Any = SECRET if algorithm == "HS256" else keys[algorithm].public_key()
        asyncio.run(check.caller(token))  # the JWKS read once, then cached
        bare = per_call_us(lambda: jwt.decode(token, verifying, algorithms=[algorithm],
                                              audience=AUDIENCE, issuer=ISSUER),  # noqa: B023
                           calls, rounds)
        homeo = per_async_call_us(lambda: check.caller(token), calls, rounds)  # noqa: B023
        rows.append([f"JWT {algorithm}", f"{bare:.1f}", f"{homeo:.1f}", f"{homeo - bare:+.1f}"])
    return rows


def rate_rows(folder: Path, calls: int, rounds: int) -> list[list[str]]:
    limit = parse_rate_limit("1000000/second")
    limiter = RateLimiter()
    bare = per_call_us(lambda: limiter.take(("key", "k1"), limit), calls, rounds)
    buckets = [("key:k1", limit.calls, limit.period_seconds),
               ("tenant:acme", limit.calls, limit.period_seconds)]
    urls = {"SQLite": f"sqlite:///{folder / 'limits.db'}"}
    problem = postgres_problem(POSTGRES_URL)
    rows = []
    with postgres_schema(POSTGRES_URL) if problem is None else nullcontext() as schema_url:
        if schema_url is not None:
            urls["PostgreSQL"] = schema_url
        for name, url in urls.items():
            backends = open_backends(url)
            try:
                homeo = per_call_us(lambda: backends.store.take_rate_tokens(buckets),  # noqa: B023
                                    max(calls // 10, 100), rounds)
            finally:
                backends.close()
            rows.append([f"shared rate limit, {name}", f"{bare:.1f}", f"{homeo:.1f}",
                         f"{homeo - bare:+.1f}"])
            throttled = throttle_us(url, max(calls // 10, 100), rounds)
            rows.append([f"failed check throttle, {name}", f"{bare:.1f}", f"{throttled:.1f}",
                         f"{throttled - bare:+.1f}"])
    if problem is not None:
        rows.append(["shared rate limit, PostgreSQL", "-", "-", f"not measured: {problem}"])
    return rows


def throttle_us(url: str, calls: int, rounds: int) -> float:
    """One failed check's throttle work: is the address throttled, then count it."""
    backends = open_backends(url)
    try:
        # A burst no run reaches: every call reads a bucket with tokens, then takes one.
        throttle = FailureThrottle(backends.store, 10**9, 1.0, time.time)

        async def failed_once() -> None:
            await throttle.wait("203.0.113.9")
            await throttle.failed("203.0.113.9")

        return per_async_call_us(failed_once, calls, rounds)
    finally:
        backends.close()


def scrub_rows(calls: int, rounds: int) -> list[list[str]]:
    """The scrub every log line, span, error and tool output goes through."""
    from homeo.safety.scrub import Scrubber

    scrubber = Scrubber(["configured-secret-" + "x" * 20])
    plain = ("run failed: model scripted: the deploy server db-7 refused the request after"
             " 3 attempts; see run_01a236b53a0162209ef505 step 4 (tool http_get)")
    leaky = plain + " with Authorization: Bearer hk_0123456789abcdef_" + "s" * 43
    rows = []
    for name, text in (("a plain log line", plain), ("a line with a bearer key", leaky)):
        event = {"event": text, "level": "error", "run_id": "run_01a236b53a0162209ef505"}
        render = per_call_us(lambda: json.dumps(event), calls, rounds)  # noqa: B023
        homeo = per_call_us(lambda: scrubber.text(text), calls, rounds)  # noqa: B023
        rows.append([f"scrub {name} ({len(text)} chars)", f"{render:.1f}", f"{homeo:.1f}",
                     f"{homeo - render:+.1f}"])
    return rows


def audit_rows(folder: Path, calls: int, rounds: int) -> list[list[str]]:
    """An audit append (hash, two ML-DSA-65 signatures, one transaction) and the
    verification of a log, against ML-DSA-65 signing and verifying alone."""
    from homeo.audit import AuditLog, AuditSigner, Event, generate_key, load_public_key, verify_log

    generate_key(folder / "audit.key")
    signer = AuditSigner.load(folder / "audit.key")
    public = load_public_key(folder / "audit.key.pub")
    count = max(calls // 10, 100)
    message = b"x" * 64
    signature = signer.private.sign(message)
    sign_alone = per_call_us(lambda: signer.private.sign(message), count, rounds)
    verify_alone = per_call_us(lambda: public.verify(signature, message), count, rounds)
    rows = []
    urls = {"SQLite": f"sqlite:///{folder / 'audit.db'}"}
    problem = postgres_problem(POSTGRES_URL)
    with postgres_schema(POSTGRES_URL) if problem is None else nullcontext() as schema_url:
        if schema_url is not None:
            urls["PostgreSQL"] = schema_url
        for name, url in urls.items():
            backends = open_backends(url)
            try:
                log = AuditLog(backends.store, signer)
                event = Event("run.submitted", "key:k1", "run:r1", {"agent": "echo"})
                append = per_call_us(lambda: log.record("acme", event), count,  # noqa: B023
                                     rounds)
                entries = backends.store.list_audit("acme")
                head = backends.store.audit_head("acme")
                began = time.perf_counter()
                assert verify_log("acme", entries, head, public).ok
                check = (time.perf_counter() - began) / len(entries) * 1e6
            finally:
                backends.close()
            rows.append([f"audit append, {name} (2 signatures)", f"{2 * sign_alone:.1f}",
                         f"{append:.1f}", f"{1e6 / append:,.0f}/s"])
            rows.append([f"audit verify per entry, {name}", f"{verify_alone:.1f}",
                         f"{check:.1f}", f"{1e6 / check:,.0f}/s"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is shown")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        rows = (api_key_rows(folder, args.calls, args.rounds)
                + jwt_rows(folder, args.calls, args.rounds)
                + rate_rows(folder, args.calls, args.rounds)
                + scrub_rows(args.calls, args.rounds))
        audit = audit_rows(folder, args.calls, args.rounds)
    print(table(["per request", "baseline µs", "homeo µs", "homeo - baseline"], rows))
    print("baselines: SHA-256 + compare_digest (API key); jwt.decode alone (JWT);"
          " the in-process token bucket (rate limit, throttle); json.dumps of the line (scrub)")
    print(table(["audit log", "ML-DSA-65 alone µs", "homeo µs", "homeo rate"], audit))


if __name__ == "__main__":
    main()
