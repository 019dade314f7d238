"""The `Model` interface: one request method, plain pydantic messages.

Every provider (OpenAI-compatible HTTP, the in-process local model, the
scripted test model) implements `Model.request`. The engine never knows which
one it talks to. `Model.stream` gives the same answer as it is generated; a
provider that cannot stream inherits a `stream` that yields the whole answer
at once.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field


class ToolCall(BaseModel):
    """A model's request to run one tool with JSON arguments."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One chat message. `tool_call_id` links a tool result to its call;
    `is_error` marks a result that is the tool's failure, not its answer."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False


class ToolSpec(BaseModel):
    """What a model is told about a tool: its name, purpose and argument schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class NamedTool:
    """A `tool_choice` that makes the reply a call to this one tool."""

    name: str


# Which tool calls a reply may make: "auto" (a call or an answer, the default),
# "required" (a call to one of the tools) or a call to one named tool.
ToolChoice = Literal["auto", "required"] | NamedTool


def tool_choice_problem(choice: ToolChoice | None, tools: list[ToolSpec]) -> str | None:
    """Why `choice` cannot be met with `tools` on offer, or None when it can."""
    if choice is None or choice == "auto":
        return None
    if not tools:
        return "tool_choice requires a tool call, but no tools are offered"
    if isinstance(choice, NamedTool) and choice.name not in {tool.name for tool in tools}:
        offered = ", ".join(tool.name for tool in tools)
        return f"tool_choice names tool {choice.name!r}, which is not offered (tools: {offered})"
    return None


def cut_at_stop(text: str, stop: list[str] | None) -> str:
    """`text` up to the first of the `stop` sequences (which is left out)."""
    ends = [found for sequence in stop or [] if sequence and (found := text.find(sequence)) >= 0]
    return text[: min(ends)] if ends else text


def options_given(**options: Any) -> dict[str, Any]:
    """The optional request options that are set, to pass on as keywords: a Model
    written before an option existed still works while nobody asks for it."""
    return {name: value for name, value in options.items() if value is not None}


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    # From the price table (HOMEO_PRICES); 0 when the model has no price.
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ModelResponse(BaseModel):
    """The model's answer: an assistant message (maybe with tool calls) and its cost."""

    message: Message
    usage: Usage = Field(default_factory=Usage)
    model: str = ""


class Embeddings(BaseModel):
    """One vector per input text, in input order, and what making them cost."""

    vectors: list[list[float]]
    usage: Usage = Field(default_factory=Usage)
    model: str = ""


class ModelError(Exception):
    """A provider failed to answer. `retryable` tells the caller whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class Unsupported(ModelError):
    """The model cannot do what was asked (embeddings from a chat model, a
    chat from an embedding model). Never retryable."""


class StreamInterrupted(ModelError):
    """A stream failed after its first token. Part of the answer was already
    delivered, so nothing retries it: the caller decides whether to ask again."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    """The next piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of the `index`-th tool call: its id and name come first, its
    arguments (JSON text) in one or more pieces to be joined."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last event of a stream: the whole answer, assembled, with its usage."""

    response: ModelResponse


StreamEvent = TextDelta | ToolCallDelta | StreamEnd


async def events_of(response: ModelResponse) -> AsyncIterator[StreamEvent]:
    """A finished answer as a stream: its text, its tool calls, then its end."""
    if response.message.content:
        yield TextDelta(response.message.content)
    for index, call in enumerate(response.message.tool_calls):
        yield ToolCallDelta(index, call.id, call.name, json.dumps(call.arguments))
    yield StreamEnd(response)


class Model(ABC):
    """A chat model. Implementations live in `homeo.llm.providers`."""

    name: str = "model"

    @abstractmethod
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
        """Send `messages` (and the tools the model may call); return its reply.

        `json_schema`, when given, asks for a final answer that is JSON matching
        it (as far as the provider can enforce that; `homeo.llm.structured`
        checks the answer). `tool_choice` "required" or a `NamedTool` makes the
        reply a tool call (one of `tools`, or that one). `stop` ends a text
        answer before the first of its sequences."""

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
        """`request`, as the answer is generated: text and tool-call deltas, then
        one `StreamEnd` with the assembled answer and its usage. Errors before the
        first event follow `request`'s rules; this default waits for the whole
        answer and yields it at once."""
        response = await self.request(
            messages, tools, max_tokens=max_tokens, temperature=temperature,
            **options_given(tool_choice=tool_choice, stop=stop),
        )
        async for event in events_of(response):
            yield event

    async def embed(self, texts: list[str]) -> Embeddings:
        """One embedding vector per text, in order. Chat-only models refuse
        with `Unsupported`, which names the model."""
        raise Unsupported(f"model {self.name!r} does not make embeddings")

    async def aclose(self) -> None:
        """Release what the model holds (connections, loaded weights). Optional."""
        return


class Embedder(Model):
    """A model that makes embeddings only: `request` refuses with `Unsupported`,
    so a chat routed to it says what to use instead."""

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
        raise Unsupported(f"{self.name} makes embeddings only and cannot chat: use a chat"
                          " model such as `local`")

    @abstractmethod
    async def embed(self, texts: list[str]) -> Embeddings: ...
