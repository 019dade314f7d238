"""A fault-injecting OpenAI-compatible server on 127.0.0.1, for router and API tests.

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
"""

from __future__ import annotations

import json
import re
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


class FaultServer:
    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.default = Reply(body=completion())
        self.received: list[dict[str, Any]] = []
        self.chunks_sent = 0  # stream chunks written so far, [DONE] included
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}/v1"

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.received.append(body)
            return self.script.pop(0) if self.script else self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
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
