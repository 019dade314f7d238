"""A small ASGI app served by uvicorn behind homeo.tls on 127.0.0.1, for tests
of the TLS layer itself (tests/api/test_tls.py runs homeo's own app)."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from OpenSSL import SSL

from homeo.tls import https_protocol
from tests.support.tlskit import Pki, make_pki

START_DEADLINE_SECONDS = 30.0


async def echo_app(scope, receive, send) -> None:  # noqa: ANN001 (ASGI)
    """POST: the body's length and SHA-256. GET /big?n=N: N bytes. Any other GET:
    the client address uvicorn saw and the scheme."""
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        digest, size = hashlib.sha256(), 0
        while True:
            message = await receive()
            digest.update(message.get("body", b""))
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = f"{size} {digest.hexdigest()}".encode()
    elif scope["path"] == "/big":
        body = b"x" * int(scope["query_string"].decode().removeprefix("n="))
    else:
        body = f"{scope['client'][0]}:{scope['client'][1]} {scope['scheme']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def serve_tls() -> Iterator[Callable[..., int]]:
    """start(context, handshake_timeout=10) -> the port echo_app is served on over TLS."""
    started: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(context: SSL.Context, handshake_timeout: float = 10.0) -> int:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(
            echo_app, http=https_protocol(context, handshake_timeout), log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]},
                                  daemon=True)
        thread.start()
        started.append((server, thread))
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return listener.getsockname()[1]

    yield start
    for server, thread in started:
        server.should_exit = True
        thread.join(START_DEADLINE_SECONDS)
        assert not thread.is_alive(), "uvicorn did not stop"
