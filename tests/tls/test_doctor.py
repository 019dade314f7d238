"""`homeo doctor`'s TLS checks (homeo.doctor.check_tls) against servers on
127.0.0.1 that negotiate what the test makes them negotiate."""

from __future__ import annotations

import datetime
from pathlib import Path

from homeo.config import Settings
from homeo.doctor import check_tls
from homeo.tls import server_context, set_groups
from tests.support.tlskit import Pki, make_pki


def settings(pki: Pki, port: int, tmp_path: Path, host: str = "127.0.0.1") -> Settings:
    return Settings(data_dir=tmp_path / "data", host=host, port=port,
                    tls_cert_file=pki.cert_file, tls_key_file=pki.key_file)


def test_a_server_negotiating_x25519mlkem768_with_the_configured_certificate_is_ok(
        serve_tls, pki: Pki, tmp_path: Path) -> None:
    port = serve_tls(server_context(pki.cert_file, pki.key_file))
    certificate, tls = check_tls(settings(pki, port, tmp_path, host="0.0.0.0"))
    assert (certificate.name, certificate.status) == ("tls certificate", "ok")
    assert certificate.detail.startswith("CN=127.0.0.1, valid until ")
    assert (tls.name, tls.status) == ("tls", "ok")
    # Serving on every address: doctor asks on loopback.
    assert tls.detail.startswith("TLS 1.3, X25519MLKEM768, TLS_")
    assert tls.detail.endswith(f" at 127.0.0.1:{port}")


def test_a_server_without_the_post_quantum_group_is_missing_with_a_fix(
        serve_tls, pki: Pki, tmp_path: Path) -> None:
    context = server_context(pki.cert_file, pki.key_file)
    set_groups(context, ["X25519"])  # as a server on an older OpenSSL would
    port = serve_tls(context)
    _, tls = check_tls(settings(pki, port, tmp_path))
    assert tls.status == "missing"
    assert "x25519" in tls.detail and "not the post-quantum group X25519MLKEM768" in tls.detail
    assert "cryptography" in tls.fix


def test_a_server_with_another_certificate_is_missing(serve_tls, pki: Pki,
                                                      tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other")
    port = serve_tls(server_context(other.cert_file, other.key_file))
    _, tls = check_tls(settings(pki, port, tmp_path))
    assert tls.status == "missing" and "another certificate than HOMEO_TLS_CERT_FILE" in tls.detail
    assert tls.fix == "restart `homeo serve` to load the configured certificate"


def test_an_expired_certificate_is_missing(pki: Pki, tmp_path: Path) -> None:
    later = pki.certificate.not_valid_after_utc + datetime.timedelta(days=1)
    certificate, _ = check_tls(settings(pki, 9, tmp_path), now=later)
    assert certificate.status == "missing" and "expired" in certificate.detail
    assert certificate.fix == "renew the certificate in HOMEO_TLS_CERT_FILE"
