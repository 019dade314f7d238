"""Secrets planted in text are found, with their kind and exact characters;
look-alikes that fail a format's check and ordinary text are not."""

from __future__ import annotations

import base64
import json
import random
import string
import zlib

import pytest

from homeo.safety.credentials import BASE62, SecretsGuard, find_secrets, github_checksum_ok


def github_token(prefix: str = "ghp", seed: int = 1) -> str:
    """A token in GitHub's format: 30 random base-62 characters and their CRC32."""
    rng = random.Random(seed)
    payload = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(30))
    value, digits = zlib.crc32(payload.encode()), ""
    while value:
        value, digit = divmod(value, 62)
        digits = BASE62[digit] + digits
    return f"{prefix}_{payload}{digits.rjust(6, '0')}"


def jwt() -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': '42', 'name': 'x'})}." \
           "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"


PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPmljnnudb9G3"
       "HECdnH\nlWu2/a1gB9JW5TBQ+AVpum9Okx7KfqkfBKL9mcHgSL0yWMdjMfNOqNtrQqKlN4kE\n"
       "-----END RSA PRIVATE KEY-----")
OPENAI = "sk-proj-" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7" + "T3BlbkFJ" + "xY0zA3bC6dE9fG2hJ5kL8mN1"
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

PLANTED = [
    (f"export GITHUB_TOKEN={github_token()}", "GITHUB_TOKEN", github_token()),
    (f"use {github_token('gho', 7)} for the app", "GITHUB_TOKEN", github_token("gho", 7)),
    (f"OPENAI_API_KEY={OPENAI} # do not share", "OPENAI_API_KEY", OPENAI),
    (f"[default]\naws_access_key_id = {AWS_ID}\n", "AWS_ACCESS_KEY_ID", AWS_ID),
    (f"aws_secret_access_key = {AWS_SECRET}\n", "AWS_SECRET_ACCESS_KEY", AWS_SECRET),
    (f"Authorization: Bearer {jwt()}", "JWT", jwt()),
    (f"key file:\n{PEM}\nend", "PRIVATE_KEY", PEM),
    ("DATABASE_URL=postgresql://app:s3cr3t-Pa55@db.internal:5432/shop", "PASSWORD",
     "s3cr3t-Pa55"),
    ("redis://:hunter2xyz@cache:6379/0 is the cache", "PASSWORD", "hunter2xyz"),
    ("db_password = 'Tr0ub4dor&3x'", "PASSWORD", "Tr0ub4dor&3x"),
    ("slack: xoxb-2048-1234567890-abcdefABCDEF", "SLACK_TOKEN", "xoxb-2048-1234567890-abcdefABCDEF"),
    ("GOOGLE_KEY=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "GOOGLE_API_KEY",
     "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
]


@pytest.mark.parametrize(("text", "kind", "secret"), PLANTED)
def test_a_planted_secret_is_found_exactly(text: str, kind: str, secret: str) -> None:
    verdict = SecretsGuard().check(text)
    assert verdict.flagged and verdict.label == "secret"
    assert [(s.kind, text[s.start:s.end]) for s in verdict.spans] == [(kind, secret)]
    assert kind in verdict.reason


def test_a_github_token_with_a_wrong_checksum_is_a_look_alike() -> None:
    token = github_token()
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert github_checksum_ok(token) and not github_checksum_ok(forged)
    assert find_secrets(f"token {forged}") == []


def test_a_jwt_shape_without_a_json_header_is_not_a_jwt() -> None:
    assert find_secrets("eyJhbGciOiJI.eyJzdWIiOiIxMjM0NTY3.SflKxwRJSMeKKF2QT4fw") == []


ORDINARY = [
    "Send an email to alice@example.com about the Q3 budget.",
    "Connect with postgresql://app@db:5432/shop (the password comes from PGPASSWORD).",
    "The password must be at least twelve characters long.",
    "Set api_key: <your key here> in config.yaml, never the key itself.",
    "See https://github.com/homeo/homeo/issues/12 and run `git push origin main`.",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUJ\n-----END CERTIFICATE-----",
    "The sk-learn package and the task-runner-v2 branch are unrelated to keys.",
    "usage: deployctl [-h] [--token TOKEN] [--password-file PATH] COMMAND",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_has_no_secret(text: str) -> None:
    verdict = SecretsGuard().check(text)
    assert not verdict.flagged, verdict
    assert verdict.label == "clean" and verdict.spans == ()


def test_two_secrets_in_one_text_are_two_spans_in_order() -> None:
    text = f"id {AWS_ID} then {github_token()}"
    kinds = [span.kind for span in SecretsGuard().check(text).spans]
    assert kinds == ["AWS_ACCESS_KEY_ID", "GITHUB_TOKEN"]
