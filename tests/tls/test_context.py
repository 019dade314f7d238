"""homeo.tls.context: the server context from certificate and key files, and
the settings that name them; each bad file refused with what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from homeo.config import Settings
from homeo.tls import GROUPS, TLSConfigError, server_context, set_groups
from tests.support.tlskit import Pki, make_pki, other_key


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def test_a_matching_certificate_and_key_make_a_tls_1_3_server_context(pki: Pki) -> None:
    context = server_context(pki.cert_file, pki.key_file)
    connection = SSL.Connection(context, None)
    connection.set_accept_state()
    assert connection.get_certificate(as_cryptography=True) == pki.certificate
    assert GROUPS == ("X25519MLKEM768", "X25519")


def test_a_key_of_another_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    wrong = other_key(tmp_path / "wrong.pem")
    with pytest.raises(TLSConfigError, match=r"is not the key of the certificate in"):
        server_context(pki.cert_file, wrong)


def test_an_encrypted_key_is_refused_with_how_to_decrypt_it(pki: Pki, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(TLSConfigError, match=r"is encrypted; give an unencrypted key"):
        server_context(pki.cert_file, encrypted)


def test_files_that_are_not_pem_are_refused_naming_the_setting(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TLSConfigError, match=r"^HOMEO_TLS_CERT_FILE .* holds no PEM certificate"):
        server_context(junk, pki.key_file)
    with pytest.raises(TLSConfigError, match=r"^HOMEO_TLS_KEY_FILE .* holds no PEM private key"):
        server_context(pki.cert_file, junk)
    # The certificate where the key belongs: no private key in it.
    with pytest.raises(TLSConfigError, match=r"^HOMEO_TLS_KEY_FILE .* holds no PEM private key"):
        server_context(pki.cert_file, pki.cert_file)


def test_an_unknown_group_is_refused() -> None:
    with pytest.raises(TLSConfigError, match=r"refused the key exchange groups NoSuchGroup"):
        set_groups(SSL.Context(SSL.TLS_SERVER_METHOD), ["NoSuchGroup"])


def test_both_files_are_needed_and_each_must_be_readable(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError, match=r"^HOMEO_TLS_KEY_FILE is set but HOMEO_TLS_CERT_FILE"
                                             r" is not: TLS needs the certificate and its"):
        server_context(None, pki.key_file)
    with pytest.raises(TLSConfigError, match=r"^HOMEO_TLS_CERT_FILE is set but HOMEO_TLS_KEY_FILE"
                                             r" is not"):
        server_context(pki.cert_file, None)
    with pytest.raises(TLSConfigError, match=r"^cannot read HOMEO_TLS_CERT_FILE .*missing.pem:"
                                             r" No such file or directory; check the path"):
        server_context(tmp_path / "missing.pem", pki.key_file)
    with pytest.raises(TLSConfigError, match=r"^cannot read HOMEO_TLS_KEY_FILE .*: Is a"
                                             r" directory"):
        server_context(pki.cert_file, tmp_path)


def test_settings_ask_for_tls_when_either_file_is_set(pki: Pki, tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, tls_cert_file=pki.cert_file).tls_enabled()
    assert Settings(data_dir=tmp_path, tls_key_file=pki.key_file).tls_enabled()
    assert not Settings(data_dir=tmp_path).tls_enabled()
