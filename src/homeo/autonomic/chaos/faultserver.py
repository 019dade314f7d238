"""A fault-injecting OpenAI-compatible server on 127.0.0.1: the chaos harness's
providers (`homeo chaos run`), also used by the router's and API's tests.

It answers `POST .../chat/completions` from a script of `Reply`s (status, body,
headers, delay), then with `default` once the script runs out, and records
every request it receives. A long `delay` is a hang; a string body that is not
JSON is a malformed answer.

A request with `"stream": true` answered by a 200 completion gets that
completion as server-sent chunks, the way OpenAI sends them: a role chunk,
the content word by word, each tool call's arguments in pieces, the finish,
usage when `stream_options.include_usage` asks, then `[DONE]`. `first_chunk_delay`
holds the stream after the role chunk (a stream that hangs before its first
token), `chunk_delay` slows every later chunk, and `cut_after` closes the
connection after that many chunks past the role chunk (a stream cut midway).

`POST .../embeddings` has its own script, `embeddings` (an `Endpoint`): a 200
reply without a body answers the request's `input` with `vectors_for`, one
deterministic vector per text; any other reply (an error, a hang, a body that
is not JSON, `embeddings_body` of the wrong texts) is sent as scripted. It
records each request's body and headers.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    first_chunk_delay: float = 0.0
    chunk_delay: float = 0.0
    cut_after: int | None = None


def completion(content: str | None = "ok", *, tool_calls: list[dict[str, Any]] | None = None,
               model: str = "served-model") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }


def stream_chunks(body: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A completion body as the chunks a streaming server sends, role chunk first."""
    message = body["choices"][0]["message"]
    base = {"id": body.get("id", "chatcmpl-1"), "object": "chat.completion.chunk",
            "model": body.get("model", "served-model")}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": word})
               for word in re.findall(r"\s*\S+\s*", message.get("content") or "")]
    for index, call in enumerate(message.get("tool_calls") or []):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        chunks.append(chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                             "function": {"name": call["function"]["name"],
                                                          "arguments": ""}}]}))
        for piece in (arguments[:half], arguments[half:]):
            chunks.append(chunk({"tool_calls": [{"index": index,
                                                 "function": {"arguments": piece}}]}))
    chunks.append(chunk({}, body["choices"][0].get("finish_reason", "stop")))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": body.get("usage")})
    return chunks


def error(status: int, message: str, **headers: str) -> Reply:
    return Reply(status=status, body={"error": {"message": message}}, headers=headers)


DIMENSIONS = 4


def vector_for(text: str) -> list[float]:
    """The embedding the server gives `text`: DIMENSIONS numbers from its SHA-256."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(byte / 255, 4) for byte in digest[:DIMENSIONS]]


def embeddings_body(texts: list[str], *, model: str = "served-embedder",
                    reverse: bool = False) -> dict[str, Any]:
    """An OpenAI embeddings response for `texts`; `reverse` lists the items last
    first (their `index` still says where each belongs), as servers may."""
    data = [{"object": "embedding", "index": index, "embedding": vector_for(text)}
            for index, text in enumerate(texts)]
    return {
        "object": "list",
        "data": data[::-1] if reverse else data,
        "model": model,
        "usage": {"prompt_tokens": sum(len(text.split()) for text in texts),
                  "total_tokens": sum(len(text.split()) for text in texts)},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that died mid-request (the chaos harness SIGKILLs workers)
        # is expected; anything else is printed as ThreadingHTTPServer does.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class Endpoint:
    """Scripted replies (then `default`), and the bodies and headers received."""

    default: Reply = field(default_factory=Reply)
    script: list[Reply] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


class FaultServer:
    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.default = Reply(body=completion())
        self.received: list[dict[str, Any]] = []
        self.chunks_sent = 0  # stream chunks written so far, [DONE] included
        self.embeddings = Endpoint()
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}/v1"

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.received.append(body)
            return self.script.pop(0) if self.script else self.default

    def _next_embedding(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        endpoint = self.embeddings
        with self._lock:
            endpoint.received.append(body)
            endpoint.headers.append(headers)
            reply = endpoint.script.pop(0) if endpoint.script else endpoint.default
        if reply.status == 200 and reply.body is None:
            texts = body.get("input")
            texts = [texts] if isinstance(texts, str) else texts
            return Reply(body=embeddings_body(texts, model=body.get("model") or "served-embedder"),
                         headers=reply.headers, delay=reply.delay)
        return reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                if self.path.rstrip("/").endswith("/embeddings"):
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    reply = server._next_embedding(request, headers)
                else:
                    reply = server._next(request)
                time.sleep(reply.delay)
                if (request.get("stream") and reply.status == 200
                        and isinstance(reply.body, dict) and "choices" in reply.body):
                    include_usage = (request.get("stream_options") or {}).get("include_usage")
                    self._stream(reply, stream_chunks(reply.body, bool(include_usage)))
                    return
                payload = (
                    reply.body.encode()
                    if isinstance(reply.body, str)
                    else json.dumps(reply.body).encode()
                )
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def _stream(self, reply: Reply, chunks: list[dict[str, Any]]) -> None:
                events = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    for sent, event in enumerate(events):
                        if reply.cut_after is not None and sent == reply.cut_after + 1:
                            self.close_connection = True  # no final chunk: the body is cut
                            return
                        if sent == 1:
                            time.sleep(reply.first_chunk_delay)
                        elif sent > 1:
                            time.sleep(reply.chunk_delay)
                        data = event.encode()
                        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                        self.wfile.flush()
                        server.chunks_sent += 1
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler

    def start(self) -> None:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@contextmanager
def fault_server() -> Iterator[FaultServer]:
    server = FaultServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
