"""`homeo serve` and `homeo doctor` with HOMEO_TLS_CERT_FILE and HOMEO_TLS_KEY_FILE,
as a user runs them (subprocesses; certificates from tests/support/tlskit.py)."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

from homeo.tls import probe
from tests.support.tlskit import Pki, make_pki, other_key
from tests.test_cli import COMMAND_DEADLINE_SECONDS, HOMEO, Lines, homeo, homeo_env

pytestmark = pytest.mark.slow  # starts subprocesses


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def test_serve_speaks_tls_with_x25519mlkem768_and_doctor_reports_it(tmp_path: Path,
                                                                     pki: Pki) -> None:
    port = free_port()
    tls = {"HOMEO_TLS_CERT_FILE": str(pki.cert_file), "HOMEO_TLS_KEY_FILE": str(pki.key_file),
           "HOMEO_PORT": str(port), "HOMEO_WORKERS": "0", "HOMEO_LOG_LEVEL": "warning"}
    data = str(tmp_path / "data")
    server = subprocess.Popen([str(HOMEO), "serve", "--data-dir", data], env=homeo_env(**tls),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = Lines(server.stdout)  # type: ignore[arg-type]
        lines.wait_for(rf"^homeo serving https://127\.0\.0\.1:{port} \(TLS 1\.3,"
                       r" X25519MLKEM768 preferred, certificate ")
        assert probe("127.0.0.1", port).group == "X25519MLKEM768"
        doctor = homeo("doctor", "--data-dir", data, **tls)
        assert doctor.returncode == 0, doctor.stderr
        assert re.search(rf"^ok\s+tls\s+TLS 1\.3, X25519MLKEM768, TLS_\w+ at 127\.0\.0\.1:{port}$",
                         doctor.stdout, re.M), doctor.stdout
        assert re.search(r"^ok\s+tls certificate\s+CN=127\.0\.0\.1, valid until \d{4}-\d\d-\d\d$",
                         doctor.stdout, re.M), doctor.stdout
    finally:
        server.terminate()
        server.wait(timeout=COMMAND_DEADLINE_SECONDS)
    assert server.returncode == 0


def test_doctor_says_when_no_server_answers_and_when_tls_is_off(tmp_path: Path,
                                                                pki: Pki) -> None:
    port = free_port()
    done = homeo("doctor", "--data-dir", str(tmp_path), HOMEO_PORT=str(port),
                 HOMEO_TLS_CERT_FILE=str(pki.cert_file), HOMEO_TLS_KEY_FILE=str(pki.key_file))
    assert done.returncode == 0, done.stderr
    assert re.search(rf"^info\s+tls\s+nothing negotiated at 127\.0\.0\.1:{port} \(cannot"
                     r" connect .*\); start `homeo serve` to see what it negotiates$",
                     done.stdout, re.M), done.stdout
    off = homeo("doctor", "--data-dir", str(tmp_path))
    assert re.search(r"^info\s+tls\s+off: `homeo serve` speaks plain HTTP; set"
                     r" HOMEO_TLS_CERT_FILE and HOMEO_TLS_KEY_FILE", off.stdout, re.M), off.stdout


def test_serve_with_a_key_that_is_not_the_certificates_exits_2_before_anything(
        tmp_path: Path, pki: Pki) -> None:
    wrong = other_key(tmp_path / "wrong.pem")
    done = homeo("serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
                 HOMEO_TLS_CERT_FILE=str(pki.cert_file), HOMEO_TLS_KEY_FILE=str(wrong))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line == (f"homeo: HOMEO_TLS_KEY_FILE {wrong} is not the key of the certificate in"
                    f" HOMEO_TLS_CERT_FILE {pki.cert_file}; give the key the certificate was"
                    " issued for")
    assert not (tmp_path / "data").exists()  # nothing opened, no key made


def test_serve_with_a_certificate_but_no_key_exits_2_naming_both(tmp_path: Path,
                                                                 pki: Pki) -> None:
    done = homeo("serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
                 HOMEO_TLS_CERT_FILE=str(pki.cert_file))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line == ("homeo: HOMEO_TLS_CERT_FILE is set but HOMEO_TLS_KEY_FILE is not: TLS"
                    " needs the certificate and its private key (set both, or neither to serve"
                    " plain HTTP)")
    assert not (tmp_path / "data").exists()
