"""Where `http_get` may go: HOMEO_HTTP_ALLOWLIST, entries `host` or `host:port`.

An entry with a port allows that port only; an entry without one allows the
scheme's default port only (80 for http, 443 for https), so naming a host
never opens its other services (Redis on 6379, an admin port) to the model.
IPv6 addresses with a port are written in brackets: `[::1]:8080`.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORTS = {"http": 80, "https": 443}


class AllowlistError(ValueError):
    """An allowlist entry is not `host` or `host:port`."""


@dataclass(frozen=True)
class Allowlist:
    # (host, port); port None means the scheme's default port.
    entries: frozenset[tuple[str, int | None]]

    def allows(self, scheme: str, host: str, port: int | None) -> bool:
        default = DEFAULT_PORTS.get(scheme)
        effective = port if port is not None else default
        host = host.lower()
        return (host, effective) in self.entries or (
            effective == default and (host, None) in self.entries
        )

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __str__(self) -> str:
        return ", ".join(sorted(_show(host, port) for host, port in self.entries))


def _show(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def parse_allowlist(text: str) -> Allowlist:
    """`"example.org, 127.0.0.1:8080, [::1]:9000"` -> an Allowlist."""
    return Allowlist(frozenset(_entry(part.strip()) for part in text.split(",") if part.strip()))


def _entry(entry: str) -> tuple[str, int | None]:
    text = entry.lower()
    port_text: str | None = None
    if text.startswith("["):  # [v6] or [v6]:port
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise AllowlistError(f"{entry!r} is not host or host:port ([v6]:port for IPv6)")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:  # a name, an IPv4 address or a bare IPv6 address
        host = text
    if not host or not all(c.isalnum() or c in ".-:" for c in host):
        raise AllowlistError(f"{entry!r} is not a host name or IP address (host or host:port)")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise AllowlistError(f"{entry!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)
