"""Any OpenAI-compatible chat-completions endpoint, over HTTP with httpx.

OpenAI itself, vLLM, llama.cpp's server, Ollama, LM Studio and most gateways
speak this format. One request is one HTTP call: retries belong to the caller,
which reads `ModelError.retryable`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from homeo.llm.base import (
    Message,
    Model,
    ModelError,
    ModelResponse,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)

# Statuses worth trying again: timeouts, conflicts, rate limits, server faults.
_RETRYABLE_STATUSES = {408, 409, 429}


class ModelHTTPError(ModelError):
    """The endpoint answered with an error status."""

    def __init__(self, message: str, *, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(
            message, retryable=status_code in _RETRYABLE_STATUSES or status_code >= 500
        )
        self.status_code = status_code
        self.retry_after = retry_after


class OpenAIModel(Model):
    """A chat model behind `POST {base_url}/chat/completions`."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
        connect_timeout: float | None = None,
    ) -> None:
        self.model = model
        self.name = f"openai:{model}"
        request_headers = dict(headers or {})
        if api_key:
            request_headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=request_headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout or timeout),
        )
        self._timeout = timeout

    async def request(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> ModelResponse:
        body = self._body(messages, tools, max_tokens, temperature)
        if json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json_schema},
            }
        try:
            response = await self._client.post("chat/completions", json=body)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise self._status_error(response)
        return response_from_wire(_json_body(response, self.name))

    async def stream(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The answer as server-sent events (`stream: true`), yielded as they arrive.

        The httpx read timeout bounds the wait for each piece; a stream that
        ends before `[DONE]` (or its finish) is a retryable `ModelError`."""
        body = self._body(messages, tools, max_tokens, temperature)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        try:
            async with self._client.stream("POST", "chat/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._status_error(response)
                async for event in _events_from_sse(response.aiter_lines(), self.name):
                    yield event
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    def _body(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None,
        max_tokens: int | None,
        temperature: float | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": [to_wire(m) for m in messages]}
        if tools:
            body["tools"] = [tool_to_wire(tool) for tool in tools]
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        return body

    def _transport_error(self, exc: httpx.TransportError) -> ModelError:
        if isinstance(exc, httpx.TimeoutException):
            return ModelError(
                f"{self.name} did not answer within {self._timeout}s ({type(exc).__name__})",
                retryable=True,
            )
        if isinstance(exc, httpx.ConnectError):
            return ModelError(
                f"could not reach {self._client.base_url}: {type(exc).__name__}: {exc}",
                retryable=True,
            )
        return ModelError(
            f"lost the connection to {self._client.base_url}: {type(exc).__name__}: {exc}",
            retryable=True,
        )

    def _status_error(self, response: httpx.Response) -> ModelHTTPError:
        return ModelHTTPError(
            f"{self.name} answered HTTP {response.status_code}: {_error_text(response)}",
            status_code=response.status_code,
            retry_after=_retry_after(response),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def to_wire(message: Message) -> dict[str, Any]:
    """One of our messages in the OpenAI format."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        wire["name"] = message.name
    if message.tool_calls:
        wire["content"] = message.content or None
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    return wire


def tool_to_wire(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def response_from_wire(data: dict[str, Any]) -> ModelResponse:
    """Parse a chat-completions response body into our `ModelResponse`."""
    try:
        wire = data["choices"][0]["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ModelError(f"response has no choices[0].message: {str(data)[:500]}") from exc
    calls = [_tool_call_from_wire(call) for call in wire.get("tool_calls") or []]
    message = Message(role="assistant", content=wire.get("content") or "", tool_calls=calls)
    usage = data.get("usage") or {}
    return ModelResponse(
        message=message,
        usage=Usage(
            input_tokens=usage.get("prompt_tokens") or 0,
            output_tokens=usage.get("completion_tokens") or 0,
        ),
        model=data.get("model") or "",
    )


async def _events_from_sse(lines: AsyncIterator[str], name: str) -> AsyncIterator[StreamEvent]:
    """Chat-completion chunks (`data: {...}` lines up to `data: [DONE]`) as our
    events; tool-call argument pieces are joined per index for the final answer."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage: dict[str, Any] = {}
    model = ""
    finished = False
    async for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, `event:` and `:` keep-alive comments
        data = line[5:].strip()
        if data == "[DONE]":
            finished = True
            break
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ModelError(
                f"{name} streamed a chunk that is not JSON: {data[:500]!r}", retryable=True
            ) from exc
        if not isinstance(chunk, dict):
            raise ModelError(f"{name} streamed a chunk that is not an object: {data[:500]!r}")
        if chunk.get("error"):
            error = chunk["error"]
            text = error.get("message", error) if isinstance(error, dict) else error
            raise ModelError(f"{name} reported an error in its stream: {text}", retryable=True)
        model = chunk.get("model") or model
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                content.append(delta["content"])
                yield TextDelta(delta["content"])
            for piece in delta.get("tool_calls") or []:
                index = piece.get("index", 0)
                function = piece.get("function") or {}
                call = calls.setdefault(index, {"id": None, "name": "", "arguments": []})
                call["id"] = piece.get("id") or call["id"]
                call["name"] = function.get("name") or call["name"]
                call["arguments"].append(function.get("arguments") or "")
                yield ToolCallDelta(index, piece.get("id"), function.get("name"),
                                    function.get("arguments") or "")
            finished = finished or bool(choice.get("finish_reason"))
    if not finished:
        raise ModelError(f"{name} ended its stream before the answer was complete",
                         retryable=True)
    tool_calls = [
        _tool_call_from_wire({"id": call["id"], "function": {
            "name": call["name"], "arguments": "".join(call["arguments"]) or "{}"}})
        for _, call in sorted(calls.items())
    ]
    yield StreamEnd(ModelResponse(
        message=Message(role="assistant", content="".join(content), tool_calls=tool_calls),
        usage=Usage(input_tokens=usage.get("prompt_tokens") or 0,
                    output_tokens=usage.get("completion_tokens") or 0),
        model=model,
    ))


def _tool_call_from_wire(call: dict[str, Any]) -> ToolCall:
    function = call.get("function") or {}
    name = function.get("name", "")
    raw = function.get("arguments") or "{}"
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"model called tool {name!r} with arguments that are not valid JSON: {raw!r}"
        ) from exc
    if not isinstance(arguments, dict):
        raise ModelError(
            f"model called tool {name!r} with arguments that are not an object: {raw!r}"
        )
    # Some servers leave the id out; the engine still needs one to link the result.
    call_id = call.get("id") or f"call_{uuid.uuid4().hex[:16]}"
    return ToolCall(id=call_id, name=name, arguments=arguments)


def _json_body(response: httpx.Response, name: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        # A broken proxy or an overloaded server, not a bad request: worth another try.
        raise ModelError(
            f"{name} answered with a body that is not JSON: {response.text[:500]!r}",
            retryable=True,
        ) from exc
    if not isinstance(data, dict):
        raise ModelError(
            f"{name} answered with JSON that is not an object: {response.text[:500]!r}"
        )
    return data


def _error_text(response: httpx.Response) -> str:
    """The provider's own error message, wherever its body puts it."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if isinstance(error, str):
            return error
    return json.dumps(data)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from model APIs, and the caller has its own backoff
