"""A client handshake that reports what a server negotiates (`homeo doctor`, tests, bench)."""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import time
from dataclasses import dataclass

from cryptography import x509
from OpenSSL import SSL

from homeo.tls.context import GROUPS, set_groups


class ProbeError(Exception):
    """The server could not be reached, or the handshake failed; the message says which."""


@dataclass(frozen=True)
class Negotiated:
    protocol: str  # "TLSv1.3"
    cipher: str  # "TLS_AES_256_GCM_SHA384"
    group: str  # "X25519MLKEM768"
    certificate: x509.Certificate  # the server's own

    def describe(self) -> str:
        """E.g. "TLS 1.3, X25519MLKEM768, TLS_AES_256_GCM_SHA384"."""
        return f"{self.protocol.replace('TLSv', 'TLS ')}, {self.group}, {self.cipher}"


def client_context(groups: tuple[str, ...] | list[str] = GROUPS) -> SSL.Context:
    """A TLS 1.2+ client context offering `groups`. It does not verify the
    server's certificate: it reports what is negotiated, it sends no secrets."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    set_groups(context, groups)
    return context


def handshake(connection: SSL.Connection, sock: socket.socket, deadline: float) -> None:
    """Finish `connection`'s handshake on `sock` (non-blocking) by `deadline`
    (time.monotonic()), or raise ProbeError."""
    while True:
        try:
            connection.do_handshake()
            return
        except (SSL.WantReadError, SSL.WantWriteError) as want:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProbeError("no TLS handshake in time") from None
            readable = isinstance(want, SSL.WantReadError)
            select.select([sock] if readable else [], [] if readable else [sock], [], left)
        except SSL.Error as error:
            raise ProbeError(f"TLS handshake failed: {error}") from None


def probe(host: str, port: int, groups: tuple[str, ...] | list[str] = GROUPS,
          timeout: float = 5.0) -> Negotiated:
    """Connect to host:port, complete a TLS handshake offering `groups`, and
    report what was negotiated."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        raise ProbeError(f"cannot connect to {host}:{port}: {error.strerror or error}") from None
    with sock:
        sock.setblocking(False)
        connection = SSL.Connection(client_context(groups), sock)
        connection.set_connect_state()
        if not _is_address(host):  # SNI names hosts, never addresses (RFC 6066)
            connection.set_tlsext_host_name(host.encode("idna"))
        handshake(connection, sock, time.monotonic() + timeout)
        certificate = connection.get_peer_certificate(as_cryptography=True)
        negotiated = Negotiated(
            protocol=connection.get_protocol_version_name(),
            cipher=connection.get_cipher_name() or "",
            group=connection.get_group_name() or "",
            certificate=certificate,  # type: ignore[arg-type]
        )
        # The answer is in hand; a close_notify that cannot be sent changes nothing.
        with contextlib.suppress(SSL.Error):
            connection.shutdown()
    return negotiated


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
