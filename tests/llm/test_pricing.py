"""Costs from the price table, through the model catalog and the router."""

from __future__ import annotations

import asyncio

import pytest

from homeo.config import Settings
from homeo.llm.base import Message, ModelResponse, ToolSpec, Usage
from homeo.llm.resolve import ModelCatalog

MILLION = 1_000_000


def thousand_in_ten_out(messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
    message = Message(role="assistant", content="ok")
    return ModelResponse(message=message, usage=Usage(input_tokens=1000, output_tokens=10))


MODEL = "scripted:tests.llm.test_pricing:thousand_in_ten_out"


def cost(catalog: ModelCatalog, name: str) -> float:
    reply = asyncio.run(catalog.get(name).request([Message(role="user", content="hi")]))
    return reply.usage.cost_usd


@pytest.fixture
def catalog(tmp_path) -> ModelCatalog:
    settings = Settings(
        data_dir=tmp_path,
        models={
            "plain": [{"model": MODEL}],
            "named": [{"model": MODEL, "name": "discounted"}],
        },
        prices={
            MODEL: {"input_per_million": 2.0, "output_per_million": 8.0},
            "discounted": {"input_per_million": 1.0, "output_per_million": 1.0},
        },
    )
    return ModelCatalog(settings)


def test_a_model_with_a_price_reports_its_cost(catalog: ModelCatalog) -> None:
    assert cost(catalog, MODEL) == pytest.approx((1000 * 2.0 + 10 * 8.0) / MILLION)


def test_an_alias_costs_what_its_deployment_costs(catalog: ModelCatalog) -> None:
    assert cost(catalog, "plain") == pytest.approx((1000 * 2.0 + 10 * 8.0) / MILLION)
    # A deployment's own price wins over its model's.
    assert cost(catalog, "named") == pytest.approx((1000 + 10) / MILLION)


def test_a_model_without_a_price_costs_nothing(tmp_path) -> None:
    catalog = ModelCatalog(Settings(data_dir=tmp_path))
    assert cost(catalog, MODEL) == 0.0


def test_a_price_is_validated() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Settings(prices={"x": {"input_per_million": -1}})
    with pytest.raises(ValueError, match="Extra inputs"):
        Settings(prices={"x": {"per_token": 1}})
