"""homeo.tls.protocol under uvicorn with a small app (tests/tls/conftest.py):
bodies far larger than uvicorn's buffers both ways (its flow control pauses
and resumes reading and writing through the TLS layer), the peer's address
and the https scheme, and a clean close."""

from __future__ import annotations

import hashlib
import ssl

import httpx

from homeo.tls import server_context
from tests.support.tlskit import Pki

BIG = 8 * 2**20  # far above uvicorn's 64 KiB high-water marks


def client(pki: Pki, **transport: object) -> httpx.Client:
    context = ssl.create_default_context(cafile=pki.ca_file)
    return httpx.Client(timeout=60, transport=httpx.HTTPTransport(verify=context, **transport))


def test_a_large_upload_and_a_large_download_arrive_whole(serve_tls, pki: Pki) -> None:
    port = serve_tls(server_context(pki.cert_file, pki.key_file))
    body = bytes(range(256)) * (BIG // 256)
    with client(pki) as https:
        uploaded = https.post(f"https://127.0.0.1:{port}/", content=body)
        assert uploaded.text == f"{len(body)} {hashlib.sha256(body).hexdigest()}"
        # Chunks the server reads while uvicorn has paused reading are kept, not lost.
        chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
        streamed = https.post(f"https://127.0.0.1:{port}/", content=chunks)
        assert streamed.text == uploaded.text
        downloaded = https.get(f"https://127.0.0.1:{port}/big?n={BIG}")
        assert downloaded.content == b"x" * BIG
        # The same connection goes on after both.
        assert https.get(f"https://127.0.0.1:{port}/").status_code == 200


def test_the_app_sees_the_peer_address_and_https(serve_tls, pki: Pki) -> None:
    port = serve_tls(server_context(pki.cert_file, pki.key_file))
    with client(pki, local_address="127.0.0.3") as https:
        response = https.get(f"https://127.0.0.1:{port}/")
        local = response.extensions["network_stream"].get_extra_info("client_addr")
    assert response.text == f"127.0.0.3:{local[1]} https"
