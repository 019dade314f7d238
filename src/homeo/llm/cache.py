"""An optional exact-match response cache for model aliases.

A request with the same alias, messages, tools and options as one answered
less than `ttl_seconds` ago gets that answer again without calling a
provider. A hit used no tokens, so its usage (and cost) is zero: budgets and
costs count what the providers were asked for. Only successful answers are
kept, at most `max_entries`, the least recently used going first.

Answers are never shared between tenants: each tenant asks through its own
`CachedModel` (`scope`, given by whoever builds it for that tenant: the agent
catalog, the API), and the scope is part of every key.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from homeo.llm.base import (
    Embeddings,
    Message,
    Model,
    ModelResponse,
    StreamEnd,
    StreamEvent,
    ToolChoice,
    ToolSpec,
    Usage,
    events_of,
    options_given,
)


class ResponseCache:
    def __init__(
        self, ttl_seconds: float, max_entries: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, tuple[float, ModelResponse]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(scope: str | None, model: str, messages: list[Message],
            tools: list[ToolSpec] | None, options: dict[str, Any]) -> str:
        request = {
            "scope": scope,  # the tenant: never share an answer between tenants
            "model": model,
            "messages": [m.model_dump() for m in messages],
            "tools": [t.model_dump() for t in tools or []],
            "options": options,
        }
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=repr)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def get(self, key: str) -> ModelResponse | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self.clock() - entry[0] >= self.ttl_seconds:
                self._entries.pop(key, None)
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: str, response: ModelResponse) -> None:
        with self._lock:
            self._entries[key] = (self.clock(), response)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


class CachedModel(Model):
    """`model`, answering repeated requests of one `scope` (a tenant) from `cache`."""

    def __init__(self, model: Model, cache: ResponseCache, scope: str | None = None) -> None:
        self.model = model
        self.cache = cache
        self.scope = scope
        self.name = model.name

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
        extra = options_given(json_schema=json_schema, tool_choice=tool_choice, stop=stop)
        options = {"max_tokens": max_tokens, "temperature": temperature, **extra}
        key = self.cache.key(self.scope, self.name, messages, tools, options)
        cached = self.cache.get(key)
        if cached is not None:
            return cached.model_copy(update={"usage": Usage()})
        response = await self.model.request(
            messages, tools, max_tokens=max_tokens, temperature=temperature, **extra
        )
        self.cache.put(key, response)
        return response

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
        """A hit is replayed at once; a miss streams, and only a complete answer is kept."""
        extra = options_given(tool_choice=tool_choice, stop=stop)
        options = {"max_tokens": max_tokens, "temperature": temperature, **extra}
        key = self.cache.key(self.scope, self.name, messages, tools, options)
        cached = self.cache.get(key)
        if cached is not None:
            async for event in events_of(cached.model_copy(update={"usage": Usage()})):
                yield event
            return
        events = self.model.stream(messages, tools, max_tokens=max_tokens,
                                   temperature=temperature, **extra)
        try:
            async for event in events:
                if isinstance(event, StreamEnd):
                    self.cache.put(key, event.response)
                yield event
        finally:
            await events.aclose()

    async def embed(self, texts: list[str]) -> Embeddings:
        """Not cached: the cache is for chat answers."""
        return await self.model.embed(texts)

    async def aclose(self) -> None:
        await self.model.aclose()
