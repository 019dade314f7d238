"""A scripted model for tests and demos: it answers from a list or a function.

Shipped in the package (not in tests) so that any test, benchmark or example
agent can run the full engine with no network and no weights.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

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

Reply = ModelResponse | Message | str | dict[str, Any]
ReplyFunction = Callable[[list[Message], list[ToolSpec]], Reply]

_call_ids = itertools.count(1)


def tool_call(name: str, **arguments: Any) -> Message:
    """An assistant message that calls one tool: handy when writing scripts."""
    return Message(
        role="assistant",
        tool_calls=[ToolCall(id=f"call_{next(_call_ids)}", name=name, arguments=arguments)],
    )


def _as_response(reply: Reply) -> ModelResponse:
    if isinstance(reply, ModelResponse):
        return reply
    if isinstance(reply, str):
        message = Message(role="assistant", content=reply)
    elif isinstance(reply, Message):
        message = reply
    else:
        message = Message.model_validate({"role": "assistant", **reply})
    words = len(message.content.split()) + sum(len(c.arguments) for c in message.tool_calls)
    return ModelResponse(message=message, usage=Usage(output_tokens=words), model="scripted")


class ScriptedModel(Model):
    """Answers with `replies` in order, or by calling `function(messages, tools)`.

    When the list runs out the model raises `ModelError`: a test that asks for
    more turns than it scripted fails loudly instead of looping.
    """

    name = "scripted"

    def __init__(self, replies: Sequence[Reply] | ReplyFunction) -> None:
        if callable(replies):
            self._function: ReplyFunction | None = replies
            self._replies: list[Reply] = []
        else:
            self._function = None
            self._replies = list(replies)
        self.requests: list[list[Message]] = []
        self.schemas: list[dict[str, Any] | None] = []  # json_schema of each request

    async def request(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> ModelResponse:
        self.requests.append(list(messages))
        self.schemas.append(json_schema)
        if self._function is not None:
            return _as_response(self._function(messages, tools or []))
        if not self._replies:
            raise ModelError("scripted model has no replies left")
        return _as_response(self._replies.pop(0))

    async def stream(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The reply word by word, each tool call's arguments in two pieces, then its end."""
        response = await self.request(messages, tools, max_tokens=max_tokens,
                                      temperature=temperature)
        for word in re.findall(r"\s*\S+\s*", response.message.content) or [
                response.message.content]:
            if word:
                await asyncio.sleep(0)  # a real stream lets other tasks run between pieces
                yield TextDelta(word)
        for index, call in enumerate(response.message.tool_calls):
            arguments = json.dumps(call.arguments)
            half = len(arguments) // 2
            yield ToolCallDelta(index, call.id, call.name, arguments[:half])
            await asyncio.sleep(0)
            yield ToolCallDelta(index, arguments=arguments[half:])
        yield StreamEnd(response)
