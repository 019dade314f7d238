"""Any OpenAI-compatible endpoint (chat completions and embeddings), over HTTP with aiohttp.

OpenAI itself, vLLM, llama.cpp's server, Ollama, LM Studio and most gateways
speak this format. One request is one HTTP call: retries belong to the caller,
which reads `ModelError.retryable`.

aiohttp rather than httpx: homeo's router sits on the hot path of every model
call, and aiohttp's connection pool costs several times less per request than
httpx's (bench/router_overhead.py). Its session belongs to the event loop that
made it, so the session is made on first use, on the running loop.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import json
import ssl
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

from homeo.llm.base import (
    Embeddings,
    Message,
    Model,
    ModelError,
    ModelResponse,
    NamedTool,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
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
    """A model behind `POST {base_url}/chat/completions` and `POST {base_url}/embeddings`.

    `timeout` bounds the connection from the pool, and each wait for the
    server (its answer's head, then every piece of its body); `connect_timeout`
    (default: `timeout`) bounds opening a TCP connection."""

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
        self.base_url = base_url.rstrip("/") + "/"
        # Every request is a JSON POST: the content type goes with the session's headers.
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout
        self._client_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=connect_timeout or timeout,
            sock_read=timeout,
        )
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    async def _client(self) -> aiohttp.ClientSession:
        """The session of the running loop, made on first use. The model is used
        from one loop at a time: a session left by a loop that has ended (an
        earlier `asyncio.run`) is replaced and closed."""
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and self._session_loop is loop and not session.closed:
            return session
        # What httpx did: a proxy from the environment, certificates from certifi
        # or SSL_CERT_FILE. Read once here: aiohttp's trust_env would read the
        # environment (and ~/.netrc) again on every request.
        connector = aiohttp.TCPConnector(
            ssl=_tls_context() if self.base_url.startswith("https:") else True
        )
        self._session = aiohttp.ClientSession(
            headers=self._headers, timeout=self._client_timeout, connector=connector,
            proxy=_env_proxy(self.base_url),
        )
        self._session_loop = loop
        if session is not None:
            await session.close()
        return self._session

    async def request(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
        tool_choice: ToolChoice | None = None,
        stop: list[str] | None = None,
    ) -> ModelResponse:
        body = self._body(messages, tools, max_tokens, temperature, tool_choice, stop)
        if json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json_schema},
            }
        return response_from_wire(await self._post("chat/completions", body))

    async def embed(self, texts: list[str]) -> Embeddings:
        """One vector per text, in input order, from `POST {base_url}/embeddings`."""
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise ModelError(f"{self.name}: texts must be a list of strings")
        if not texts:
            return Embeddings(vectors=[], model=self.model)
        data = await self._post("embeddings", {"model": self.model, "input": texts})
        return embeddings_from_wire(data, len(texts), self.name)

    async def stream(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tool_choice: ToolChoice | None = None,
        stop: list[str] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The answer as server-sent events (`stream: true`), yielded as they arrive.

        The read timeout bounds the wait for each piece; a stream that ends
        before `[DONE]` (or its finish) is a retryable `ModelError`."""
        body = self._body(messages, tools, max_tokens, temperature, tool_choice, stop)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        client = await self._client()
        try:
            async with client.post(self.base_url + "chat/completions",
                                   data=json.dumps(body).encode()) as response:
                if response.status >= 400:
                    raise self._status_error(response, await response.read())
                lines = _lines(response.content.iter_any())
                async for event in _events_from_sse(lines, self.name):
                    yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc) from exc

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` as JSON to `{base_url}{path}`; its answer as a JSON object."""
        client = await self._client()
        try:
            async with client.post(self.base_url + path,
                                   data=json.dumps(body).encode()) as response:
                content = await response.read()
                if response.status >= 400:
                    raise self._status_error(response, content)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc) from exc
        return _json_object(content, self.name)

    def _body(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None,
        max_tokens: int | None,
        temperature: float | None,
        tool_choice: ToolChoice | None = None,
        stop: list[str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": [to_wire(m) for m in messages]}
        if tools:
            body["tools"] = [tool_to_wire(tool) for tool in tools]
            if tool_choice is not None:
                body["tool_choice"] = tool_choice_to_wire(tool_choice)
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if stop:
            body["stop"] = stop
        return body

    def _transport_error(self, exc: aiohttp.ClientError | TimeoutError) -> ModelError:
        if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
            return ModelError(
                f"{self.name} did not answer within {self._timeout}s ({type(exc).__name__})",
                retryable=True,
            )
        if isinstance(exc, aiohttp.InvalidURL):
            return ModelError(f"{self.name}: {self.base_url!r} is not a usable URL: {exc}")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return ModelError(
                f"could not reach {self.base_url}: {type(exc).__name__}: {exc}",
                retryable=True,
            )
        return ModelError(
            f"lost the connection to {self.base_url}: {type(exc).__name__}: {exc}",
            retryable=True,
        )

    def _status_error(self, response: aiohttp.ClientResponse, content: bytes) -> ModelHTTPError:
        return ModelHTTPError(
            f"{self.name} answered HTTP {response.status}:"
            f" {_error_text(content, response.reason)}",
            status_code=response.status,
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )

    async def aclose(self) -> None:
        session, self._session, self._session_loop = self._session, None, None
        if session is not None:
            # On a loop that has closed, aiohttp only marks the session closed.
            await session.close()


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


def tool_choice_to_wire(choice: ToolChoice) -> str | dict[str, Any]:
    if isinstance(choice, NamedTool):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


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


def embeddings_from_wire(data: dict[str, Any], count: int, name: str) -> Embeddings:
    """Parse an embeddings response body: `count` vectors, put in input order by `index`."""
    items = data.get("data")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ModelError(f"{name} answered embeddings without a data list: {str(data)[:500]}")
    if len(items) != count:
        raise ModelError(f"{name} answered {len(items)} embeddings for {count} texts")
    ordered = sorted(items, key=lambda item: item.get("index", -1))
    if [item.get("index") for item in ordered] != list(range(count)):
        raise ModelError(f"{name} answered embeddings whose indexes are not 0 to {count - 1}")
    vectors = [item.get("embedding") for item in ordered]
    for index, vector in enumerate(vectors):
        if not isinstance(vector, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in vector
        ):
            raise ModelError(f"{name} answered embedding {index} that is not a list of numbers")
    usage = data.get("usage") or {}
    return Embeddings(
        vectors=vectors,
        usage=Usage(input_tokens=usage.get("prompt_tokens") or 0),
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


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The body's text lines as they arrive, without their line ends (LF or CRLF)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    async for chunk in chunks:
        lines = (pending + decoder.decode(chunk)).split("\n")
        pending = lines.pop()  # a line still arriving
        for line in lines:
            yield line.removesuffix("\r")
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending.removesuffix("\r")


def _json_object(content: bytes, name: str) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except ValueError as exc:
        # A broken proxy or an overloaded server, not a bad request: worth another try.
        raise ModelError(
            f"{name} answered with a body that is not JSON: {_text(content)[:500]!r}",
            retryable=True,
        ) from exc
    if not isinstance(data, dict):
        raise ModelError(
            f"{name} answered with JSON that is not an object: {_text(content)[:500]!r}"
        )
    return data


def _text(content: bytes) -> str:
    return content.decode("utf-8", errors="replace")


def _error_text(content: bytes, reason: str | None) -> str:
    """The provider's own error message, wherever its body puts it."""
    try:
        data = json.loads(content)
    except ValueError:
        return _text(content)[:500] or (reason or "")
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if isinstance(error, str):
            return error
    return json.dumps(data)[:500]


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from model APIs, and the caller has its own backoff


def _env_proxy(url: str) -> str | None:
    """The proxy HTTP_PROXY / HTTPS_PROXY / ALL_PROXY name for `url`, unless NO_PROXY covers it."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The certificates httpx trusted: SSL_CERT_FILE or SSL_CERT_DIR, else certifi's."""
    return httpx.create_ssl_context()
