"""`http_get` against a real HTTP server on 127.0.0.1: off by default, allowlist, limits."""

from __future__ import annotations

import asyncio
import bz2
import zlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from homeo.config import load_settings
from homeo.engine.graph import RunContext, RunState
from homeo.engine.react import ToolNode
from homeo.llm.providers.scripted import tool_call
from homeo.tools.builtin import http_get
from homeo.tools.context import ToolContext, ToolSettings
from homeo.tools.registry import ToolError, load_tool

SEEN: list[str] = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        SEEN.append(self.path)
        port = self.server.server_address[1]
        if self.path == "/hello":
            self._send(200, "text/plain; charset=utf-8", "héllo from the test server".encode())
        elif self.path == "/big":
            self._send(200, "text/plain", b"x" * 3000)
        elif self.path == "/binary":
            self._send(200, "application/octet-stream", bytes(range(128, 256)))
        elif self.path == "/inside":
            self._redirect("/hello")
        elif self.path == "/outside":
            self._redirect(f"http://localhost:{port}/hello")
        elif self.path == "/loop":
            self._redirect("/loop")
        elif self.path.startswith("/to-port/"):  # same host, another port
            self._redirect(f"http://127.0.0.1:{self.path.removeprefix('/to-port/')}/hello")
        elif self.path in ("/zlib", "/bz2"):
            # A few KB that the codec named in `charset` would expand to 64 MiB.
            squeeze = zlib.compress if self.path == "/zlib" else bz2.compress
            self._send(200, f"text/plain; charset={self.path[1:]}_codec",
                       squeeze(b"A" * 64 * 2**20))
        elif self.path == "/latin1":
            self._send(200, "text/plain; charset=ISO-8859-1", "café".encode("latin-1"))
        elif self.path == "/slow":
            time.sleep(1.5)
            try:
                self._send(200, "text/plain", b"late")
            except ConnectionError:
                pass  # the client has given up, as the test wants
        else:
            self._send(404, "text/plain", b"no such page")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("location", location)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output quiet


def _serve() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server() -> Iterator[str]:
    SEEN.clear()
    yield from _serve()


@pytest.fixture
def other_server() -> Iterator[str]:
    """A second server on the same host, another port (SEEN is shared)."""
    yield from _serve()


@pytest.fixture
def allow_loopback(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEO_HTTP_ALLOWLIST", server.removeprefix("http://"))


def fetch(url: str) -> dict[str, Any]:
    """Call the tool as a worker does: with the operator's settings (the test's
    environment) in its context."""
    settings = ToolSettings.from_settings(load_settings())
    return asyncio.run(http_get(url=url, context=ToolContext("t", "r", settings=settings)))


def test_http_get_is_off_by_default(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOMEO_HTTP_ALLOWLIST", raising=False)
    with pytest.raises(ToolError, match="turned off.*HOMEO_HTTP_ALLOWLIST"):
        fetch(f"{server}/hello")
    assert SEEN == []


@pytest.mark.usefixtures("allow_loopback")
def test_an_allowed_host_is_fetched(server: str) -> None:
    assert fetch(f"{server}/hello") == {
        "url": f"{server}/hello",
        "status": 200,
        "content_type": "text/plain; charset=utf-8",
        "text": "héllo from the test server",
        "truncated": False,
    }
    assert fetch(f"{server}/missing")["status"] == 404
    assert fetch(f"{server}/binary")["text"] == "<128 bytes of binary data>"


@pytest.mark.usefixtures("allow_loopback")
def test_other_hosts_and_schemes_are_refused(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    with pytest.raises(ToolError, match=f"may not reach 'localhost:{port}'.*allows: 127.0.0.1"):
        fetch(f"http://localhost:{port}/hello")
    with pytest.raises(ToolError, match="only http:// and https://"):
        fetch("file:///etc/passwd")
    assert SEEN == []


@pytest.mark.usefixtures("allow_loopback")
def test_redirects_are_followed_only_to_allowed_hosts(server: str) -> None:
    assert fetch(f"{server}/inside")["text"] == "héllo from the test server"
    SEEN.clear()
    with pytest.raises(ToolError, match="may not reach 'localhost:"):
        fetch(f"{server}/outside")
    assert SEEN == ["/outside"]  # the redirect's target was never requested
    with pytest.raises(ToolError, match="more than 5 redirects"):
        fetch(f"{server}/loop")


def test_the_body_is_cut_at_the_size_limit(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEO_HTTP_ALLOWLIST", f"example.org, {server.removeprefix('http://')}")
    monkeypatch.setenv("HOMEO_HTTP_MAX_BYTES", "1K")
    result = fetch(f"{server}/big")
    assert result["truncated"] is True and result["text"] == "x" * 1024


def test_a_slow_server_times_out(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEO_HTTP_ALLOWLIST", server.removeprefix("http://"))
    monkeypatch.setenv("HOMEO_HTTP_TIMEOUT", "500ms")
    with pytest.raises(ToolError, match="took longer than 0.5s"):
        fetch(f"{server}/slow")


def test_the_model_sees_a_refusal_as_the_tool_result(server: str) -> None:
    fetcher = load_tool("homeo.tools.builtin:http_get")
    node = ToolNode({fetcher.name: fetcher})
    state = RunState(pending_tool_calls=list(tool_call("http_get", url=server).tool_calls))
    outcome = asyncio.run(node.run(state, RunContext(tenant_id="t", run_id="r")))
    assert outcome.output == {"error": "http_get is turned off: the operator has allowed no"
                                       " hosts (HOMEO_HTTP_ALLOWLIST)"}
    assert outcome.next == "model"


def test_the_http_settings_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    from homeo.config import SettingsError

    monkeypatch.setenv("HOMEO_HTTP_ALLOWLIST", "example.org, http://evil/")
    with pytest.raises(SettingsError, match="HOMEO_HTTP_ALLOWLIST.*'http://evil/'"):
        load_settings()
    monkeypatch.setenv("HOMEO_HTTP_ALLOWLIST", "example.org:99999")
    with pytest.raises(SettingsError, match="port must be a number from 1 to 65535"):
        load_settings()
    monkeypatch.setenv("HOMEO_HTTP_ALLOWLIST", "example.org:8080, [::1]:9000, ::1, 10.0.0.1")
    load_settings()
    monkeypatch.setenv("HOMEO_HTTP_ALLOWLIST", "example.org")
    monkeypatch.setenv("HOMEO_HTTP_MAX_BYTES", "lots")
    with pytest.raises(SettingsError, match="HOMEO_HTTP_MAX_BYTES"):
        load_settings()


def test_an_entry_without_a_port_allows_only_the_default_port(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "127.0.0.1" must not open every service on it (Redis on 6379, say).
    monkeypatch.setenv("HOMEO_HTTP_ALLOWLIST", "127.0.0.1")
    port = server.rsplit(":", 1)[1]
    with pytest.raises(ToolError, match=f"may not reach '127.0.0.1:{port}'.*only 80 for http"):
        fetch(f"{server}/hello")
    assert SEEN == []


@pytest.mark.usefixtures("allow_loopback")
def test_a_redirect_to_another_port_of_an_allowed_host_is_refused(
    server: str, other_server: str
) -> None:
    other_port = other_server.rsplit(":", 1)[1]
    with pytest.raises(ToolError, match=f"may not reach '127.0.0.1:{other_port}'"):
        fetch(f"{server}/to-port/{other_port}")
    assert SEEN == [f"/to-port/{other_port}"]  # the other port was never asked


@pytest.mark.usefixtures("allow_loopback")
@pytest.mark.parametrize("codec", ["zlib", "bz2"])
def test_a_charset_that_is_no_text_encoding_is_not_used_to_decode(server: str, codec: str) -> None:
    # Decoding with zlib_codec/bz2_codec would turn these few KB into 64 MiB.
    result = fetch(f"{server}/{codec}")
    assert result["content_type"] == f"text/plain; charset={codec}_codec"
    assert result["text"].startswith("<") and result["text"].endswith(" bytes of binary data>")
    assert not result["truncated"]


@pytest.mark.usefixtures("allow_loopback")
def test_a_text_charset_is_used_to_decode(server: str) -> None:
    assert fetch(f"{server}/latin1")["text"] == "café"


def test_decoded_text_is_capped_too() -> None:
    from homeo.tools.builtin import _decode

    assert _decode("é".encode() * 10, "utf-8", 4) == ("éééé", True)
    assert _decode(b"abc", "utf-8", 3) == ("abc", False)
    assert _decode(b"abc", "punycode", 3) == ("abc", False)  # read as UTF-8
