"""Database URLs in messages and logs: never with their password.

`redact` is the one place that hides it; the CLI's start line and errors, the
PostgreSQL backend's errors and `homeo doctor` all go through it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_QUERY_PASSWORD = re.compile(r"(?i)(\bpassword=)[^&\s]*")


def _split(url: str) -> tuple[str, str, str, str] | None:
    """(scheme + '://', user, password, rest after '@') of a URL with a password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    # The credentials end at the last '@' before the query: a raw password may
    # itself hold '@', '/' or ':'.
    query = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, query)
    if at < 0:
        return None
    user, colon, password = rest[:at].partition(":")
    if not colon:
        return None
    return scheme + sep, user, password, rest[at + 1:]


def redact(url: str) -> str:
    """The URL with any password (in the credentials or a `password=` query
    parameter) replaced by `***`."""
    parts = _split(url)
    if parts is not None:
        start, user, _, rest = parts
        url = f"{start}{user}:***@{rest}"
    return _QUERY_PASSWORD.sub(r"\1***", url)


def passwords(url: str) -> set[str]:
    """The passwords in `url` (in its credentials or a `password=` parameter),
    raw and percent-decoded: what a message quoting it could show."""
    found = {match.group(0).partition("=")[2] for match in _QUERY_PASSWORD.finditer(url)}
    parts = _split(url)
    if parts is not None:
        found.add(parts[2])
    return {form for secret in found for form in (secret, unquote(secret)) if form}


def redact_text(text: str, url: str) -> str:
    """`text` (an error message, say) with the URL redacted and its password
    replaced wherever else it appears, as drivers may echo connection strings."""
    text = text.replace(url, redact(url))
    secrets = {match.group(0).partition("=")[2] for match in _QUERY_PASSWORD.finditer(url)}
    parts = _split(url)
    if parts is not None:
        secrets.add(parts[2])
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, unquote(secret)}:
            if len(form) >= 3:  # a one- or two-character password would mangle the text
                text = text.replace(form, "***")
    return text
