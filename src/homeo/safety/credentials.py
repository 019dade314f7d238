"""Secrets in text: API keys, tokens, private keys and passwords in connection
strings, found by their published formats and, where the format has one, a
check (GitHub's CRC32, a JWT's JSON header) so look-alikes are not flagged.

Each finding is a Span (kind, characters, score); SecretsGuard flags a text
when any span scores at least its threshold."""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from homeo.safety.verdict import Span, Verdict, drop_overlaps

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def github_checksum_ok(token: str) -> bool:
    """GitHub's classic tokens (ghp_, gho_, ghu_, ghs_, ghr_) end in the CRC32 of
    their 30 random characters, in 6 base-62 digits."""
    body = token.split("_", 1)[1]
    payload, checksum = body[:-6], body[-6:]
    value = zlib.crc32(payload.encode())
    digits = ""
    while value:
        value, digit = divmod(value, 62)
        digits = BASE62[digit] + digits
    return digits.rjust(6, "0") == checksum


def jwt_ok(token: str) -> bool:
    """A JWT's first part is base64url JSON naming its algorithm."""
    header = token.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


def _has_letters_and_digits(value: str) -> bool:
    return any(c.isalpha() for c in value) and any(c.isdigit() for c in value)


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str
    pattern: re.Pattern[str]
    score: float
    group: int = 0  # the part of the match that is the secret
    check: Callable[[str], bool] | None = None  # False: a look-alike, not reported


RULES = [
    Rule("PRIVATE_KEY", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"[\s\S]{0,20000}?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)"), 1.0),
    Rule("GITHUB_TOKEN", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"), 1.0,
         check=github_checksum_ok),
    Rule("GITHUB_TOKEN", re.compile(r"\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b"), 1.0),
    Rule("ANTHROPIC_API_KEY", re.compile(r"\bsk-ant-[A-Za-z0-9]+-[A-Za-z0-9_-]{32,}"), 1.0),
    # OpenAI keys: sk-, sk-proj-, sk-svcacct-, sk-admin-; most carry "T3BlbkFJ" ("OpenAI").
    Rule("OPENAI_API_KEY", re.compile(
        r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,}"), 1.0),
    Rule("OPENAI_API_KEY", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,}"), 0.8,
         check=_has_letters_and_digits),
    Rule("AWS_ACCESS_KEY_ID", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b"), 1.0),
    Rule("AWS_SECRET_ACCESS_KEY", re.compile(
        r"(?i)aws_?secret_?(?:access_?)?key\W{0,4}([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"), 1.0,
        group=1),
    Rule("GOOGLE_API_KEY", re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"), 1.0),
    Rule("SLACK_TOKEN", re.compile(r"\bxox[abposr]-[0-9A-Za-z-]{10,}"), 1.0),
    Rule("STRIPE_KEY", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{20,}"), 1.0),
    Rule("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}"),
         0.9, check=jwt_ok),
    # scheme://user:password@host: the password is the secret.
    Rule("PASSWORD", re.compile(
        r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,30}://[^\s:/@'\"]{0,128}:([^\s@/'\"]{1,256})@[^\s/'\"]+"), 0.9,
        group=1, check=lambda password: not password.startswith(("<", "{", "$", "*"))),
    # password = "...", api_key: ..., token=... with a value that is not a word.
    Rule("PASSWORD", re.compile(
        r"(?i)(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)"
        r"\s*[:=]\s*['\"]?([^\s'\",;]{8,200})"), 0.7, group=1, check=_has_letters_and_digits),
]


def find_secrets(text: str) -> list[Span]:
    """Every secret found, longest first where two overlap."""
    found: list[Span] = []
    for rule in RULES:
        for match in rule.pattern.finditer(text):
            value = match.group(rule.group)
            if rule.check is not None and not rule.check(value):
                continue
            found.append(Span(match.start(rule.group), match.end(rule.group), rule.kind,
                              rule.score))
    return drop_overlaps(found)


class SecretsGuard:
    name = "secrets"

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def check(self, text: str) -> Verdict:
        spans = tuple(span for span in find_secrets(text) if span.score >= self.threshold)
        if not spans:
            return Verdict(self.name, "clean", False, 0.0, self.threshold, "no secret found")
        kinds = sorted({span.kind for span in spans})
        return Verdict(self.name, "secret", True, max(span.score for span in spans),
                       self.threshold, f"{len(spans)} secret(s) found: {', '.join(kinds)}",
                       spans)
