"""The `Model` interface: one request method, plain pydantic messages.

Every provider (OpenAI-compatible HTTP, the in-process local model, the
scripted test model) implements `Model.request`. The engine never knows which
one it talks to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

from pydantic import BaseModel, Field


class ToolCall(BaseModel):
    """A model's request to run one tool with JSON arguments."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One chat message. `tool_call_id` links a tool result to its call."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


class ToolSpec(BaseModel):
    """What a model is told about a tool: its name, purpose and argument schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


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


class ModelError(Exception):
    """A provider failed to answer. `retryable` tells the caller whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


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
    ) -> ModelResponse:
        """Send `messages` (and the tools the model may call); return its reply.

        `json_schema`, when given, asks for a final answer that is JSON matching
        it (as far as the provider can enforce that; `homeo.llm.structured`
        checks the answer)."""

    async def aclose(self) -> None:
        """Release what the model holds (connections, loaded weights). Optional."""
        return None
