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
    NamedTool,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
    cut_at_stop,
    tool_choice_problem,
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


def _check_choice(message: Message, choice: ToolChoice | None) -> None:
    """ModelError when the scripted reply is not the tool call `choice` asks for."""
    if choice is None or choice == "auto":
        return
    wanted = choice.name if isinstance(choice, NamedTool) else None
    if not message.tool_calls or (wanted and any(c.name != wanted for c in message.tool_calls)):
        asked = f"a call to {wanted!r}" if wanted else "a tool call"
        raise ModelError(f"scripted reply is not {asked}, which tool_choice requires: "
                         f"{message.model_dump(exclude_defaults=True)}")


class ScriptedModel(Model):
    """Answers with `replies` in order, or by calling `function(messages, tools)`.

    When the list runs out the model raises `ModelError`: a test that asks for
    more turns than it scripted fails loudly instead of looping.

    It obeys `stop` (a text answer ends before the first stop sequence) and
    `tool_choice`: a function is shown only the tool a `NamedTool` names, and a
    reply that is not the tool call asked for is a `ModelError`. Each request's
    options are recorded in `schemas`, `tool_choices` and `stops`.
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
        self.tool_choices: list[ToolChoice | None] = []
        self.stops: list[list[str] | None] = []

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
        self.requests.append(list(messages))
        self.schemas.append(json_schema)
        self.tool_choices.append(tool_choice)
        self.stops.append(stop)
        tools = tools or []
        problem = tool_choice_problem(tool_choice, tools)
        if problem is not None:
            raise ModelError(problem)
        if isinstance(tool_choice, NamedTool):
            tools = [tool for tool in tools if tool.name == tool_choice.name]
        if self._function is not None:
            response = _as_response(self._function(messages, tools))
        elif not self._replies:
            raise ModelError("scripted model has no replies left")
        else:
            response = _as_response(self._replies.pop(0))
        _check_choice(response.message, tool_choice)
        if stop and not response.message.tool_calls:
            message = response.message.model_copy(
                update={"content": cut_at_stop(response.message.content, stop)})
            response = response.model_copy(update={"message": message})
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
        """The reply word by word, each tool call's arguments in two pieces, then its end."""
        response = await self.request(messages, tools, max_tokens=max_tokens,
                                      temperature=temperature, tool_choice=tool_choice,
                                      stop=stop)
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
