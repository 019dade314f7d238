"""JWT users: tokens signed with real keys, refused as an attacker would try them.

Public keys come from a JWKS file or from a real HTTP server on 127.0.0.1; the
clocks (the JWKS cache's and the wall clock for expiry) are injected."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from homeo.jwtauth import JwksUnavailable, JwtCheck, JwtConfig, TokenRejected
from homeo.keys import Caller

NOW = 1_800_000_000.0
SECRET = "s" * 40
ISSUER, AUDIENCE = "https://login.example.com/", "homeo"


def claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "tenant": "acme", "role": "operator",
            "iat": int(NOW) - 10, "exp": int(NOW) + 600}
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_by_hand(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """What an attacker builds: PyJWT itself refuses a PEM public key as an HMAC secret."""
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing}.{b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}"


class Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()

    def jwk(self, kid: str, private: Any) -> dict[str, Any]:
        public = private.public_key()
        kind = {rsa.RSAPublicKey: RSAAlgorithm, ec.EllipticCurvePublicKey: ECAlgorithm,
                ed25519.Ed25519PublicKey: OKPAlgorithm}
        for base, algorithm in kind.items():
            if isinstance(public, base):
                return {**algorithm.to_jwk(public, as_dict=True), "kid": kid}
        raise AssertionError(public)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


class JwksServer:
    """A real HTTP server on 127.0.0.1 serving whatever JWKS it is given."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def check(jwks: str = "", algorithms: tuple[str, ...] = ("HS256", "RS256", "ES256", "EdDSA"),
          clock: Clock | None = None, **config: Any) -> JwtCheck:
    return JwtCheck(JwtConfig(issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms,
                              secret=SECRET, jwks=jwks, **config),
                    clock=clock or Clock(), now=lambda: NOW)


def caller_of(checker: JwtCheck, token: str) -> Caller:
    return asyncio.run(checker.caller(token))


def refused(checker: JwtCheck, token: str) -> str:
    with pytest.raises(TokenRejected) as caught:
        caller_of(checker, token)
    return str(caught.value)


@pytest.fixture
def jwks_file(tmp_path: Path, keys: Keys) -> str:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [keys.jwk("r1", keys.rsa), keys.jwk("e1", keys.ec),
                                         keys.jwk("d1", keys.ed)]}))
    return str(path)


def test_a_token_signed_with_each_algorithm_names_its_user_tenant_and_role(
    keys: Keys, jwks_file: str
) -> None:
    checker = check(jwks_file)
    expected = Caller(key_id="", tenant_id="acme", role="operator", user="alice")
    assert caller_of(checker, jwt.encode(claims(), SECRET, algorithm="HS256")) == expected
    for kid, private, algorithm in (("r1", keys.rsa, "RS256"), ("e1", keys.ec, "ES256"),
                                    ("d1", keys.ed, "EdDSA")):
        token = jwt.encode(claims(), private, algorithm=algorithm, headers={"kid": kid})
        assert caller_of(checker, token) == expected, algorithm
    # A list of roles gives the highest one homeo knows.
    listed = jwt.encode(claims(role=["reader", "member", "viewer"]), SECRET, algorithm="HS256")
    assert caller_of(checker, listed).role == "member"


def test_alg_none_is_refused(jwks_file: str) -> None:
    unsigned = jwt.encode(claims(), None, algorithm="none")
    assert "`alg: none` is refused" in refused(check(jwks_file), unsigned)
    shouting = hs256_by_hand({"alg": "NONE", "typ": "JWT"}, claims(), b"").rsplit(".", 1)[0] + "."
    assert "`alg: none` is refused" in refused(check(jwks_file), shouting)


def test_rs_hs_confusion_is_refused(keys: Keys, jwks_file: str) -> None:
    """The attacker signs an HS256 token with the issuer's public key as the secret."""
    public_pem = keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    forged = hs256_by_hand({"alg": "HS256", "typ": "JWT", "kid": "r1"}, claims(), public_pem)
    only_rs = check(jwks_file, algorithms=("RS256",))
    assert refused(only_rs, forged) == (
        "JWT algorithm 'HS256' is not allowed here; this server accepts RS256"
        " (HOMEO_JWT_ALGORITHMS)")
    # Where HS256 is allowed too, it is checked with the secret, never a public key.
    assert "signature does not verify" in refused(check(jwks_file), forged)


def test_an_algorithm_the_key_does_not_fit_is_refused(keys: Keys, jwks_file: str) -> None:
    token = jwt.encode(claims(), keys.rsa, algorithm="RS256", headers={"kid": "e1"})
    assert "JWT key 'e1' (EC, ES256) cannot check a RS256 token" in refused(
        check(jwks_file), token)


def test_a_bad_signature_is_refused(keys: Keys, jwks_file: str) -> None:
    other = jwt.encode(claims(), keys.rsa_other, algorithm="RS256", headers={"kid": "r1"})
    assert "JWT signature does not verify" in refused(check(jwks_file), other)
    wrong_secret = jwt.encode(claims(), "x" * 40, algorithm="HS256")
    assert "JWT signature does not verify" in refused(check(jwks_file), wrong_secret)
    good = jwt.encode(claims(), SECRET, algorithm="HS256")
    header, payload, signature = good.split(".")
    raised = b64(json.dumps(claims(role="admin")).encode())  # the payload swapped, same signature
    assert "JWT signature does not verify" in refused(
        check(jwks_file), f"{header}.{raised}.{signature}")


@pytest.mark.parametrize(("changes", "problem"), [
    ({"exp": int(NOW) - 31}, "JWT expired 31s ago; sign in again"),
    ({"nbf": int(NOW) + 600}, "JWT is not valid yet (`nbf` is 600s ahead)"),
    ({"iat": int(NOW) + 600}, "JWT is not valid yet (`iat` is 600s ahead)"),
    ({"iss": "https://evil.example.com/"},
     "JWT issuer is not 'https://login.example.com/' (HOMEO_JWT_ISSUER)"),
    ({"aud": "another-app"}, "JWT audience does not include 'homeo' (HOMEO_JWT_AUDIENCE)"),
    ({"tenant": None}, "JWT has no `tenant` claim naming the user's tenant"),
    ({"tenant": "../globex"}, "JWT `tenant` claim is not a tenant name"),
    ({"role": "owner"}, "JWT role 'owner' is unknown; roles are viewer, member, operator, admin"),
    ({"role": None}, "JWT has no `role` claim"),
    ({"exp": None}, "JWT has no `exp` claim"),
    ({"sub": None}, "JWT has no `sub` claim"),
    ({"exp": "tomorrow"}, "JWT `exp` claim must be a number"),
])
def test_each_refusal_says_what_is_wrong(jwks_file: str, changes: dict[str, Any],
                                         problem: str) -> None:
    token = jwt.encode(claims(**changes), SECRET, algorithm="HS256")
    assert problem in refused(check(jwks_file), token)


def test_leeway_allows_a_little_clock_skew(jwks_file: str) -> None:
    token = jwt.encode(claims(exp=int(NOW) - 29, nbf=int(NOW) + 29), SECRET, algorithm="HS256")
    assert caller_of(check(jwks_file), token).user == "alice"


def test_claim_names_are_configured(jwks_file: str) -> None:
    checker = check(jwks_file, tenant_claim="https://homeo/tenant", role_claim="groups")
    token = jwt.encode(claims(tenant=None, role=None, **{"https://homeo/tenant": "globex",
                                                         "groups": ["viewer"]}),
                       SECRET, algorithm="HS256")
    assert caller_of(checker, token) == Caller("", "globex", "viewer", user="alice")


def test_a_token_without_kid_needs_a_jwks_with_one_fitting_key(keys: Keys, jwks_file: str,
                                                               tmp_path: Path) -> None:
    token = jwt.encode(claims(), keys.rsa, algorithm="RS256")
    assert caller_of(check(jwks_file), token).user == "alice"  # one RSA key in it
    crowded = tmp_path / "two.json"
    crowded.write_text(json.dumps({"keys": [keys.jwk("r1", keys.rsa),
                                            keys.jwk("r2", keys.rsa_other)]}))
    assert "has no `kid`, and the JWKS holds 2 RS256 keys" in refused(
        check(str(crowded)), token)


def test_keys_rotated_at_a_jwks_url_are_fetched_by_kid(keys: Keys,
                                                       jwks_server: JwksServer) -> None:
    clock = Clock()
    checker = check(jwks_server.url, algorithms=("RS256",), clock=clock)
    jwks_server.document = {"keys": [keys.jwk("2026-a", keys.rsa)]}
    old = jwt.encode(claims(), keys.rsa, algorithm="RS256", headers={"kid": "2026-a"})
    new = jwt.encode(claims(sub="bob"), keys.rsa_other, algorithm="RS256",
                     headers={"kid": "2026-b"})
    assert caller_of(checker, old).user == "alice"
    assert caller_of(checker, old).user == "alice"
    assert jwks_server.requests == 1  # cached

    # The issuer rotates: it signs with 2026-b and publishes both for a while.
    jwks_server.document = {"keys": [keys.jwk("2026-a", keys.rsa),
                                     keys.jwk("2026-b", keys.rsa_other)]}
    # A kid it has not seen, within 10 s of the last fetch: refused without a fetch,
    # so random kids cannot make homeo hammer the issuer.
    clock.now = 5.0
    assert "JWT key id '2026-b' is not in the JWKS" in refused(checker, new)
    assert jwks_server.requests == 1
    clock.now = 11.0
    assert caller_of(checker, new).user == "bob"
    assert caller_of(checker, old).user == "alice"
    assert jwks_server.requests == 2

    # 2026-a is withdrawn; after the refresh interval (300 s) it no longer works.
    jwks_server.document = {"keys": [keys.jwk("2026-b", keys.rsa_other)]}
    clock.now = 400.0
    assert "JWT key id '2026-a' is not in the JWKS" in refused(checker, old)
    assert caller_of(checker, new).user == "bob"
    assert jwks_server.requests == 3


def test_an_unreachable_jwks_is_unavailable_until_it_answers(keys: Keys,
                                                             jwks_server: JwksServer) -> None:
    clock = Clock()
    dead = JwksServer()
    dead.close()  # nothing listens there any more
    token = jwt.encode(claims(), keys.rsa, algorithm="RS256", headers={"kid": "r1"})
    with pytest.raises(JwksUnavailable, match="cannot read the JWKS at http://127.0.0.1"):
        caller_of(check(dead.url, algorithms=("RS256",), clock=clock), token)

    # Once fetched, a JWKS that stops answering keeps serving the keys it had.
    jwks_server.document = {"keys": [keys.jwk("r1", keys.rsa)]}
    checker = check(jwks_server.url, algorithms=("RS256",), clock=clock)
    assert caller_of(checker, token).user == "alice"
    jwks_server.close()
    clock.now = 1000.0
    assert caller_of(checker, token).user == "alice"
