"""The API over TLS, as `homeo serve` runs it with HOMEO_TLS_CERT_FILE and
HOMEO_TLS_KEY_FILE: uvicorn on 127.0.0.1 behind homeo.tls, a certificate made
here by a test CA (tests/support/tlskit.py), real clients (pyOpenSSL, httpx on
Python's ssl, raw sockets)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from OpenSSL import SSL

from homeo.tls import probe
from homeo.tls.probe import ProbeError, client_context, handshake
from tests.api.conftest import Served
from tests.api.test_runs import run_id_of, sse_events, wait_for
from tests.support.tlskit import Pki, make_pki

DEADLINE_SECONDS = 30.0


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def https(serve: Callable[..., Served], pki: Pki) -> Callable[..., Served]:
    def start(**overrides: Any) -> Served:
        return serve(tls_cert_file=pki.cert_file, tls_key_file=pki.key_file, tls_ca=pki.ca_file,
                     **overrides)
    return start


def address(served: Served) -> tuple[str, int]:
    parts = urlsplit(served.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or resets it)."""
    sock.settimeout(DEADLINE_SECONDS)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        return received
    return received


def test_the_handshake_negotiates_x25519mlkem768_with_tls_1_3(https, pki: Pki) -> None:
    served = https()
    negotiated = probe(*address(served))
    assert negotiated.group == "X25519MLKEM768"
    assert negotiated.protocol == "TLSv1.3"
    assert negotiated.describe().startswith("TLS 1.3, X25519MLKEM768, TLS_")
    assert negotiated.certificate == pki.certificate


def test_a_client_offering_only_x25519_still_gets_in(https) -> None:
    served = https()
    assert probe(*address(served), groups=["X25519"]).group.lower() == "x25519"
    # httpx speaks Python's ssl (OpenSSL 3.0): X25519 at best, and a full API call works.
    assert served.client.get("/v1/agents").status_code == 200


def test_a_client_that_only_speaks_tls_1_2_is_refused_and_the_server_goes_on(https) -> None:
    served = https()
    context = client_context()
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    with socket.create_connection(address(served), timeout=DEADLINE_SECONDS) as sock:
        sock.setblocking(False)
        connection = SSL.Connection(context, sock)
        connection.set_connect_state()
        with pytest.raises(ProbeError, match="TLS handshake failed"):
            handshake(connection, sock, time.monotonic() + DEADLINE_SECONDS)
    assert served.client.get("/v1/agents").status_code == 200


def test_an_api_call_with_a_key_works_over_tls_and_keeps_the_connection(https) -> None:
    served = https()
    api = served.client
    run_id = run_id_of(api, "echo", "over tls")
    run = wait_for(api, run_id, lambda run: run["status"] == "succeeded")
    assert run["output"] == "echo: over tls"
    # HTTP/1.1 keep-alive: several requests, one TLS connection.
    seen = []
    for _ in range(3):
        response = api.get(f"/v1/runs/{run_id}")
        assert response.status_code == 200
        seen.append(response.extensions["network_stream"].get_extra_info("client_addr"))
    assert len(set(seen)) == 1
    with served.client_for(None) as anonymous:
        assert anonymous.get("/v1/agents").status_code == 401


def test_server_sent_events_stream_over_tls(https) -> None:
    import scriptkit

    api = https().client
    gate = "tls-stream"
    run_id = run_id_of(api, "holder", gate)
    events = []
    try:
        with api.stream("GET", f"/v1/runs/{run_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for event, data in sse_events(response.iter_lines()):
                events.append((event, data))
                if event == "step" and data["name"] == "hold" and data["status"] == "running":
                    scriptkit.release(gate)  # streamed while the run waits, before it ends
    finally:
        scriptkit.release(gate)
    assert ("step", "hold") in [(name, data.get("name")) for name, data in events]
    assert events[-1] == ("end", {"id": run_id, "status": "succeeded"})


def test_plain_http_to_the_tls_port_gets_a_400_saying_to_use_https(https) -> None:
    served = https()
    plain = served.url.replace("https://", "http://")
    response = httpx.get(f"{plain}/v1/agents", timeout=DEADLINE_SECONDS)
    assert response.status_code == 400
    assert "use https:// instead of http://" in response.text
    assert served.client.get("/v1/agents").status_code == 200


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x00\x05hello",  # a handshake record that holds no ClientHello
    b"\x00" * 64,  # not TLS at all
    b"\x16\x03\x01\xff\xff" + b"A" * 2000,  # a record longer than TLS allows
])
def test_a_garbage_handshake_is_closed_and_the_server_goes_on(https, garbage: bytes) -> None:
    served = https()
    with socket.create_connection(address(served), timeout=DEADLINE_SECONDS) as sock:
        sock.sendall(garbage)
        answer = read_until_closed(sock)
    assert answer == b"" or answer[:1] == b"\x15"  # nothing, or a TLS alert record
    assert served.client.get("/v1/agents").status_code == 200
    assert probe(*address(served)).group == "X25519MLKEM768"


def test_a_handshake_that_never_finishes_is_dropped(https) -> None:
    served = https(tls_handshake_timeout_seconds=0.5)
    with socket.create_connection(address(served), timeout=DEADLINE_SECONDS) as stalled:
        stalled.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
        # The server closes it (it would hang until the deadline otherwise) ...
        assert read_until_closed(stalled)[:1] in (b"", b"\x15")
    # ... and goes on serving. A loaded machine may make even a real client's
    # handshake miss so short a limit: that one is dropped too, and it tries again.
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            assert served.client.get("/v1/agents").status_code == 200
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "no handshake finished in time"


def test_a_client_gone_mid_handshake_does_not_hurt_the_server(https) -> None:
    served = https()
    for _ in range(5):
        with socket.create_connection(address(served), timeout=DEADLINE_SECONDS) as sock:
            sock.sendall(b"\x16\x03\x01")
    assert served.client.get("/v1/agents").status_code == 200


def test_the_app_sees_the_real_client_address(https) -> None:
    # The client connects from 127.0.0.2 (all of 127/8 is loopback): a TLS front
    # proxying on 127.0.0.1 would show 127.0.0.1. Failed key checks are throttled
    # per address, and the 429 names the address the app saw.
    served = https()
    wrong = "hk_0123456789abcdef_" + "a" * 43
    with served.client_for(wrong, local_address="127.0.0.2") as guesser:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while (response := guesser.get("/v1/agents")).status_code == 401:
            assert time.monotonic() < deadline, "never throttled"
    assert response.status_code == 429
    assert "from 127.0.0.2" in response.json()["error"]["message"]
    assert served.client.get("/v1/agents").status_code == 200  # 127.0.0.1 is not throttled
