"""Identifiers that sort by creation time, so listing newest-first needs no extra column."""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str, now: float | None = None) -> str:
    """`prefix_` + 12 hex digits of milliseconds + 10 random hex digits."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{prefix}_{millis:012x}{secrets.token_hex(5)}"
