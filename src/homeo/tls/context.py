"""The server's TLS context: TLS 1.3 only, the hybrid post-quantum group first."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

# Key exchange groups in order of preference: the hybrid of X25519 and ML-KEM-768
# (FIPS 203) first, then plain X25519 for clients that lack it (Python's ssl on
# OpenSSL 3.0, older browsers and curl builds).
GROUPS = ("X25519MLKEM768", "X25519")


class TLSConfigError(ValueError):
    """The certificate or key cannot be served; the message says which and what to do."""


def set_groups(context: SSL.Context, groups: tuple[str, ...] | list[str]) -> None:
    """Offer (client) or accept (server) these key exchange groups, in this order.
    pyOpenSSL has no API for it, so this calls OpenSSL's SSL_CTX_set1_groups_list
    (bound by pyOpenSSL under its older name, SSL_CTX_set1_curves_list)."""
    from OpenSSL._util import lib

    if lib.SSL_CTX_set1_curves_list(context._context, ":".join(groups).encode()) != 1:
        raise TLSConfigError(f"OpenSSL {SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()}"
                             f" refused the key exchange groups {':'.join(groups)}")


def _read(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise TLSConfigError(f"cannot read {name} {path}: {error.strerror}; check the path"
                             " and that this user may read it") from None


def load_chain(cert_file: Path) -> list[x509.Certificate]:
    """The certificates of `cert_file`, the server's own first."""
    data = _read(cert_file, "HOMEO_TLS_CERT_FILE")
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise TLSConfigError(f"HOMEO_TLS_CERT_FILE {cert_file} holds no PEM certificate"
                             f" ({error}); give the server's certificate, then any"
                             " intermediates, as -----BEGIN CERTIFICATE----- blocks") from None
    return chain


def _load_key(key_file: Path):  # noqa: ANN202 (one of cryptography's private key types)
    data = _read(key_file, "HOMEO_TLS_KEY_FILE")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSConfigError(f"HOMEO_TLS_KEY_FILE {key_file} is encrypted; give an"
                             " unencrypted key (e.g. `openssl pkey -in KEY -out PLAIN`) and"
                             " protect it with file permissions") from None
    except ValueError as error:
        raise TLSConfigError(f"HOMEO_TLS_KEY_FILE {key_file} holds no PEM private key"
                             f" ({error}); give the key the certificate was issued for") from None


def _public(key) -> bytes:  # noqa: ANN001 (a cryptography public key)
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def server_context(cert_file: Path | None, key_file: Path | None) -> SSL.Context:
    """A TLS 1.3 server context presenting `cert_file` (a PEM chain) with
    `key_file`, or TLSConfigError saying what is wrong with them (one of them
    not given included)."""
    if cert_file is None or key_file is None:
        given, missing = (("HOMEO_TLS_CERT_FILE", "HOMEO_TLS_KEY_FILE") if key_file is None
                          else ("HOMEO_TLS_KEY_FILE", "HOMEO_TLS_CERT_FILE"))
        raise TLSConfigError(f"{given} is set but {missing} is not: TLS needs the certificate"
                             " and its private key (set both, or neither to serve plain HTTP)")
    chain = load_chain(cert_file)
    key = _load_key(key_file)
    if _public(chain[0].public_key()) != _public(key.public_key()):
        raise TLSConfigError(f"HOMEO_TLS_KEY_FILE {key_file} is not the key of the certificate"
                             f" in HOMEO_TLS_CERT_FILE {cert_file}; give the key the"
                             " certificate was issued for")
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    set_groups(context, GROUPS)
    try:
        context.use_certificate(chain[0])
        for intermediate in chain[1:]:
            context.add_extra_chain_cert(intermediate)
        context.use_privatekey(key)
        context.check_privatekey()
    except SSL.Error as error:
        raise TLSConfigError(f"OpenSSL refused HOMEO_TLS_CERT_FILE {cert_file} with"
                             f" HOMEO_TLS_KEY_FILE {key_file}: {error}") from None
    return context
