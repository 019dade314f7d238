"""HTTPS for `homeo serve`, on pyOpenSSL over cryptography's bundled OpenSSL
(Python's own ssl module here is OpenSSL 3.0, which cannot negotiate the hybrid
post-quantum group X25519MLKEM768).

- context.py: the server's TLS context from the configured certificate and key
- protocol.py: an asyncio protocol that terminates TLS and feeds uvicorn's HTTP protocol
- probe.py: a client handshake that reports what a server negotiates (`homeo doctor`)
"""

from homeo.tls.context import GROUPS, TLSConfigError, server_context, set_groups
from homeo.tls.probe import Negotiated, ProbeError, probe
from homeo.tls.protocol import https_protocol

__all__ = ["GROUPS", "Negotiated", "ProbeError", "TLSConfigError", "https_protocol", "probe",
           "server_context", "set_groups"]
