"""Cost accounting: a model wrapped with its price fills in `Usage.cost_usd`.

Prices come from `HOMEO_PRICES` (USD per million input and output tokens),
keyed by a deployment's name or a model string; `ModelCatalog` wraps the
models that have one. The engine records the cost on each step and the store
sums it on the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from homeo.config import ModelPrice
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
    options_given,
)


def cost_of(usage: Usage, price: ModelPrice) -> float:
    return (
        usage.input_tokens * price.input_per_million
        + usage.output_tokens * price.output_per_million
    ) / 1_000_000


class PricedModel(Model):
    """`model`, with the cost of each answer computed from `price`."""

    def __init__(self, model: Model, price: ModelPrice) -> None:
        self.model = model
        self.price = price
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
        response = await self.model.request(
            messages, tools, max_tokens=max_tokens, temperature=temperature, **extra
        )
        return self._priced(response)

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
        events = self.model.stream(messages, tools, max_tokens=max_tokens,
                                   temperature=temperature,
                                   **options_given(tool_choice=tool_choice, stop=stop))
        try:
            async for event in events:
                yield StreamEnd(self._priced(event.response)) if isinstance(
                    event, StreamEnd) else event
        finally:
            await events.aclose()

    async def embed(self, texts: list[str]) -> Embeddings:
        embeddings = await self.model.embed(texts)
        usage = embeddings.usage.model_copy(
            update={"cost_usd": cost_of(embeddings.usage, self.price)})
        return embeddings.model_copy(update={"usage": usage})

    def _priced(self, response: ModelResponse) -> ModelResponse:
        usage = response.usage.model_copy(update={"cost_usd": cost_of(response.usage, self.price)})
        return response.model_copy(update={"usage": usage})

    async def aclose(self) -> None:
        await self.model.aclose()
