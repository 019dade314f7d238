"""OpenAIModel against a real OpenAI-compatible HTTP server on 127.0.0.1.

The server answers from a script of (status, body, headers, delay) replies and
records every request it receives, so the tests check both directions of the
wire format.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from homeo.llm.base import Message, ModelError, ToolCall, ToolSpec
from homeo.llm.providers.openai_http import ModelHTTPError, OpenAIModel


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ScriptedEndpoint:
    """What the handler answers with, and what it was sent."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.received: list[Received] = []


def _handler(endpoint: ScriptedEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            endpoint.received.append(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            reply = endpoint.replies.pop(0)
            time.sleep(reply.delay)
            payload = (
                reply.body.encode()
                if isinstance(reply.body, str)
                else json.dumps(reply.body).encode()
            )
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ThreadingHTTPServer, ScriptedEndpoint]]:
    endpoint = ScriptedEndpoint()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(endpoint))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, endpoint
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def endpoint(server: tuple[ThreadingHTTPServer, ScriptedEndpoint]) -> ScriptedEndpoint:
    _, endpoint = server
    endpoint.replies.clear()
    endpoint.received.clear()
    return endpoint


@pytest.fixture
def base_url(server: tuple[ThreadingHTTPServer, ScriptedEndpoint]) -> str:
    httpd, _ = server
    host, port = httpd.server_address[:2]
    return f"http://{host}:{port}/v1"


def completion(message: dict[str, Any], *, model: str = "served-model") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }


def ask(
    model: OpenAIModel, messages: list[Message], tools: list[ToolSpec] | None = None, **kw: Any
):
    async def run():
        try:
            return await model.request(messages, tools, **kw)
        finally:
            await model.aclose()

    return asyncio.run(run())


ADD = ToolSpec(
    name="add",
    description="Add two numbers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
)


def test_plain_answer_sends_the_openai_wire_format(
    endpoint: ScriptedEndpoint, base_url: str
) -> None:
    endpoint.replies.append(Reply(body=completion({"role": "assistant", "content": "Paris."})))
    model = OpenAIModel(
        "gpt-test", base_url=base_url, api_key="sk-secret", headers={"X-Team": "homeo"}
    )

    response = ask(
        model,
        [
            Message(role="system", content="Be brief."),
            Message(role="user", content="Capital of France?"),
        ],
        max_tokens=50,
        temperature=0.2,
    )

    assert response.message == Message(role="assistant", content="Paris.")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 5)
    assert response.model == "served-model"
    [received] = endpoint.received
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == "Bearer sk-secret"
    assert received.headers["x-team"] == "homeo"
    assert received.body == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "max_tokens": 50,
        "temperature": 0.2,
    }


def test_no_api_key_sends_no_authorization(endpoint: ScriptedEndpoint, base_url: str) -> None:
    endpoint.replies.append(Reply(body=completion({"role": "assistant", "content": "hi"})))

    ask(OpenAIModel("m", base_url=base_url), [Message(role="user", content="hi")])

    assert "authorization" not in endpoint.received[0].headers


def test_tool_call_round_trip(endpoint: ScriptedEndpoint, base_url: str) -> None:
    endpoint.replies.append(
        Reply(
            body=completion(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_9",
                            "type": "function",
                            "function": {"name": "add", "arguments": '{"a": 2, "b": 3.5}'},
                        }
                    ],
                }
            )
        )
    )
    history = [
        Message(role="user", content="Add 1 and 1, then 2 and 3.5"),
        Message(
            role="assistant",
            tool_calls=[ToolCall(id="call_1", name="add", arguments={"a": 1, "b": 1})],
        ),
        Message(role="tool", tool_call_id="call_1", name="add", content="2"),
    ]

    response = ask(OpenAIModel("m", base_url=base_url), history, [ADD])

    assert response.message.content == ""
    assert response.message.tool_calls == [
        ToolCall(id="call_9", name="add", arguments={"a": 2, "b": 3.5})
    ]
    sent = endpoint.received[0].body
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Add two numbers.",
                "parameters": ADD.parameters,
            },
        }
    ]
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 1, "b": 1}'},
            }
        ],
    }
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "2"}


def test_malformed_tool_arguments_is_a_clear_non_retryable_error(
    endpoint: ScriptedEndpoint, base_url: str
) -> None:
    endpoint.replies.append(
        Reply(
            body=completion(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "add", "arguments": '{"a": 2,'},
                        }
                    ],
                }
            )
        )
    )

    with pytest.raises(ModelError, match="add.*not valid JSON") as caught:
        ask(OpenAIModel("m", base_url=base_url), [Message(role="user", content="add")], [ADD])

    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("status", "body", "retryable", "text"),
    [
        (
            500,
            {"error": {"message": "upstream exploded", "type": "server_error"}},
            True,
            "upstream exploded",
        ),
        (503, "Service Unavailable", True, "Service Unavailable"),
        (
            429,
            {"error": {"message": "Rate limit reached for requests"}},
            True,
            "Rate limit reached",
        ),
        (
            401,
            {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}},
            False,
            "Incorrect API key",
        ),
        (400, {"error": {"message": "max_tokens is too large"}}, False, "max_tokens is too large"),
        (404, {"error": "model 'nope' not found"}, False, "model 'nope' not found"),
    ],
)
def test_error_statuses(
    endpoint: ScriptedEndpoint, base_url: str, status: int, body: Any, retryable: bool, text: str
) -> None:
    endpoint.replies.append(Reply(status=status, body=body))

    with pytest.raises(ModelHTTPError) as caught:
        ask(OpenAIModel("m", base_url=base_url), [Message(role="user", content="hi")])

    assert caught.value.status_code == status
    assert caught.value.retryable is retryable
    assert text in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)


def test_rate_limit_carries_retry_after(endpoint: ScriptedEndpoint, base_url: str) -> None:
    endpoint.replies.append(
        Reply(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "7"})
    )

    with pytest.raises(ModelHTTPError) as caught:
        ask(OpenAIModel("m", base_url=base_url), [Message(role="user", content="hi")])

    assert caught.value.retry_after == 7.0


def test_timeout_is_retryable(endpoint: ScriptedEndpoint, base_url: str) -> None:
    endpoint.replies.append(
        Reply(body=completion({"role": "assistant", "content": "late"}), delay=1.0)
    )

    with pytest.raises(ModelError, match="did not answer within 0.2s") as caught:
        ask(OpenAIModel("m", base_url=base_url, timeout=0.2), [Message(role="user", content="hi")])

    assert caught.value.retryable is True


def test_unreachable_endpoint_is_retryable() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(ModelError, match="could not reach") as caught:
        ask(
            OpenAIModel("m", base_url=f"http://127.0.0.1:{port}/v1"),
            [Message(role="user", content="hi")],
        )

    assert caught.value.retryable is True


def test_body_that_is_not_json_is_an_error(endpoint: ScriptedEndpoint, base_url: str) -> None:
    endpoint.replies.append(Reply(body="<html>gateway</html>"))

    with pytest.raises(ModelError, match="not JSON"):
        ask(OpenAIModel("m", base_url=base_url), [Message(role="user", content="hi")])
