"""Any OpenAI-compatible chat-completions endpoint, over HTTP with httpx.

OpenAI itself, vLLM, llama.cpp's server, Ollama, LM Studio and most gateways
speak this format. One request is one HTTP call: retries belong to the caller,
which reads `ModelError.retryable`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from homeo.llm.base import Message, Model, ModelError, ModelResponse, ToolCall, ToolSpec, Usage

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
        body: dict[str, Any] = {"model": self.model, "messages": [to_wire(m) for m in messages]}
        if tools:
            body["tools"] = [tool_to_wire(tool) for tool in tools]
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json_schema},
            }
        try:
            response = await self._client.post("chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise ModelError(
                f"{self.name} did not answer within {self._timeout}s ({type(exc).__name__})",
                retryable=True,
            ) from exc
        except httpx.TransportError as exc:
            raise ModelError(
                f"could not reach {self._client.base_url}: {type(exc).__name__}: {exc}",
                retryable=True,
            ) from exc
        if response.status_code >= 400:
            raise ModelHTTPError(
                f"{self.name} answered HTTP {response.status_code}: {_error_text(response)}",
                status_code=response.status_code,
                retry_after=_retry_after(response),
            )
        return response_from_wire(_json_body(response, self.name))

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
