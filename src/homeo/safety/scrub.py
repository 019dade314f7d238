"""Secrets out of everything homeo writes down: log lines, exported spans,
error answers, the errors and tool outputs stored on runs and steps.

A `Scrubber` replaces, in any text:

- the values this process was configured with as secret (`keep_secret`: the
  JWT secret, the metrics token, provider API keys, database and queue
  passwords), wherever they appear, with `***`;
- homeo API keys (`hk_<id>_<secret>`) with `hk_<id>_***` (the id is public and
  says which key it was);
- `Bearer <token>` with `Bearer ***`;
- what the secrets guard finds by format (homeo.safety.credentials: provider
  keys, JWTs, passwords in URLs, private keys, ...) with its label, `<JWT>`.

Log lines, spans and errors are written process-wide, so the configured
values are too: the runtime calls `keep_secret` once with its settings' secrets
and every sink uses `scrub` / `scrub_value`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from homeo.safety.credentials import find_secrets
from homeo.safety.redact import redact

# Shorter configured values would mangle ordinary text (a password "abc").
MIN_SECRET_CHARS = 6
MASK = "***"
HOMEO_KEY = re.compile(r"\bhk_([0-9a-f]{16})_[A-Za-z0-9_-]{8,128}")
BEARER = re.compile(r"(?i)\b(bearer\s+)(?!\*\*\*)[A-Za-z0-9._~+/=-]{8,}")
# The secrets guard scores format matches; at this score and above they are hidden.
FOUND_SCORE = 0.7
# Some piece (lower-cased) every pattern here and in homeo.safety.credentials
# needs: a text with none of them (most log fields) skips the dozen regular
# expressions. Substring tests, because one case-insensitive alternation costs
# about as much as the expressions it would spare.
_PIECES = ("hk_", "bearer", "-----begin", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
           "github_pat_", "sk-", "k_live_", "akia", "asia", "abia", "acca", "aws", "aiza",
           "xox", "eyj", "://", "pass", "pwd", "secret", "key", "token")


def _may_hold_a_secret(text: str) -> bool:
    lowered = text.lower()
    return any(piece in lowered for piece in _PIECES)


class Scrubber:
    """Replaces secrets in text (see the module docstring). Thread-safe: the
    known values are swapped whole, never changed in place."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._known: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self.keep(known)

    def keep(self, values: Iterable[str]) -> None:
        """Hide `values` too (empty and short ones are ignored)."""
        with self._lock:
            known = set(self._known) | {v for v in values if len(v) >= MIN_SECRET_CHARS}
            self._known = tuple(sorted(known, key=len, reverse=True))  # longest first

    def text(self, text: str) -> str:
        if len(text) < MIN_SECRET_CHARS:  # most log fields: nothing could hide there
            return text
        for value in self._known:
            if value in text:
                text = text.replace(value, MASK)
        if not _may_hold_a_secret(text):
            return text
        text = BEARER.sub(rf"\1{MASK}", text)  # first: the token may be a homeo key
        text = HOMEO_KEY.sub(rf"hk_\1_{MASK}", text)
        found = [span for span in find_secrets(text) if span.score >= FOUND_SCORE]
        return redact(text, found) if found else text

    def value(self, value: Any) -> Any:
        """`value` with every string in it scrubbed (dicts, lists and tuples are
        rebuilt; other values are returned as they are)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(item) for item in value)
        return value


_process = Scrubber()


def keep_secret(*values: str) -> None:
    """Add configured secret values to what this process hides."""
    _process.keep(values)


def scrub(text: str) -> str:
    """`text` without any secret this process knows or can recognise."""
    return _process.text(text)


def scrub_value(value: Any) -> Any:
    """`value` (JSON-like) with every string scrubbed."""
    return _process.value(value)
