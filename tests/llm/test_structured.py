"""Structured output: the answer is checked against the schema, repaired once,
then refused; with the scripted model, the fault server and the local model."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from homeo.llm.base import Message, ModelResponse, Usage
from homeo.llm.breaker import BreakerPolicy, CircuitBreaker
from homeo.llm.providers.openai_http import OpenAIModel
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.llm.router import Deployment, RetryPolicy, Router
from homeo.llm.structured import InvalidSchema, StructuredOutputError, request_structured

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
from faultserver import Reply, completion, fault_server  # noqa: E402

CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
ASK = [Message(role="user", content="Largest city of France, as JSON?")]


def costing(text: str) -> ModelResponse:
    return ModelResponse(message=Message(role="assistant", content=text),
                         usage=Usage(input_tokens=10, output_tokens=4))


def ask(model: Any, schema: dict[str, Any] = CITY, **options: Any) -> ModelResponse:
    return asyncio.run(request_structured(model, ASK, schema, **options))


def test_a_matching_answer_is_returned_as_is() -> None:
    model = ScriptedModel([costing('{"city": "Paris", "population": 2100000}')])
    response = ask(model)
    assert json.loads(response.message.content) == {"city": "Paris", "population": 2100000}
    assert model.schemas == [CITY]


def test_one_repair_attempt_carries_the_validation_error() -> None:
    model = ScriptedModel([costing('{"city": "Paris", "population": "two million"}'),
                           costing('{"city": "Paris", "population": 2000000}')])
    response = ask(model)
    assert json.loads(response.message.content)["population"] == 2000000
    assert response.usage == Usage(input_tokens=20, output_tokens=8)  # both attempts
    repair = model.requests[1]
    assert repair[:2] == [ASK[0], Message(role="assistant",
                                          content='{"city": "Paris", "population": "two million"}')]
    assert repair[2].role == "user"
    assert "at population: 'two million' is not of type 'integer'" in repair[2].content


def test_a_second_failure_is_a_clear_error() -> None:
    model = ScriptedModel(["Paris, about two million people.", '{"city": "Paris"}'])
    with pytest.raises(StructuredOutputError) as caught:
        ask(model)
    assert str(caught.value) == (
        "model 'scripted' did not answer with JSON matching the schema, even after a repair"
        " attempt: at the top level: 'population' is a required property; answer was"
        " '{\"city\": \"Paris\"}'"
    )
    assert caught.value.retryable is False
    assert "the answer is not valid JSON" in model.requests[1][-1].content


def test_tool_calls_are_not_checked_against_the_answer_schema() -> None:
    model = ScriptedModel([tool_call("lookup", city="Paris")])
    assert ask(model).message.tool_calls[0].name == "lookup"


def test_an_invalid_schema_is_refused_before_any_call() -> None:
    model = ScriptedModel(["{}"])
    with pytest.raises(InvalidSchema, match="the JSON schema is invalid"):
        ask(model, {"type": "no-such-type"})
    assert model.requests == []


def test_the_router_sends_the_schema_as_response_format_and_repairs_over_http() -> None:
    with fault_server() as upstream:
        upstream.script = [Reply(body=completion('{"city": "Paris", "population": null}')),
                           Reply(body=completion('{"city": "Paris", "population": 2100000}'))]

        async def through_the_router() -> ModelResponse:
            http = OpenAIModel("served", base_url=upstream.base_url, timeout=5)
            breaker = CircuitBreaker(BreakerPolicy())
            router = Router("default", [Deployment("upstream", http, breaker)], RetryPolicy())
            try:
                return await request_structured(router, ASK, CITY)
            finally:
                await http.aclose()

        response = asyncio.run(through_the_router())
    assert json.loads(response.message.content)["population"] == 2100000
    assert response.usage.total_tokens == 34
    first, second = upstream.received
    assert first["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": CITY}}
    assert second["response_format"] == first["response_format"]
    assert "is not of type 'integer'" in second["messages"][-1]["content"]


@pytest.mark.slow
def test_the_local_model_answers_in_the_schema_through_its_grammar() -> None:
    from homeo.llm.providers.local import LocalModel

    model = LocalModel(n_ctx=2048, threads=2, max_tokens=64)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20},
                       "country": {"enum": ["France", "Germany", "Italy"]}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    response = ask(model, schema, temperature=0)
    answer = json.loads(response.message.content)
    assert set(answer) == {"city", "country"} and answer["country"] in schema["properties"][
        "country"]["enum"]
    assert response.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"$ref": "#"}, "loops at #: its references lead back to themselves"),
        ({"allOf": [{"$ref": "#/$defs/a"}], "$defs": {"a": {"anyOf": [{"$ref": "#"}]}}},
         "loops at"),
        ({"$ref": "https://example.com/schema.json"}, "$ref 'https://example.com/schema.json'"
         " at # is not local"),
        ({"properties": {"a": {"$ref": "other.json#/x"}}}, "at #/properties/a is not local"),
        ({"$ref": "#/$defs/missing"}, "points at nothing in the schema"),
        ({"type": "string", "pattern": "(?=a)b"}, "pattern '(?=a)b' at # cannot run on the"
         " linear-time regex engine (RE2)"),
        ({"patternProperties": {"(a)\\1": {}}}, "patternProperties '(a)\\\\1' at # cannot run"),
        ({"pattern": "a" * 1001}, "pattern at # is longer than 1000 characters"),
        ({"patternProperties": {"a": {}}, "unevaluatedProperties": False},
         "unevaluatedProperties together with patternProperties"),
        ({"type": "object", "properties": {"a": {"$id": "https://x/y"}}}, "nested $id"),
        # Checked by the metaschema's `regex` format, on RE2 too.
        ({"dependencies": {"a": {"pattern": "(?=x)"}}},
         "the JSON schema is invalid at #/dependencies/a"),
    ],
)
def test_a_dangerous_schema_is_refused_before_any_call(
    schema: dict[str, Any], problem: str
) -> None:
    model = ScriptedModel(["{}"])
    with pytest.raises(InvalidSchema) as caught:
        ask(model, schema)
    assert problem in str(caught.value)
    assert model.requests == []


def test_very_deep_and_very_large_schemas_are_refused() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(5000):
        deep = {"type": "object", "properties": {"a": deep}}
    with pytest.raises(InvalidSchema, match="nests deeper than 32 levels"):
        ask(ScriptedModel(["{}"]), deep)
    wide = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(6000)}}
    with pytest.raises(InvalidSchema, match="more than 10000 values"):
        ask(ScriptedModel(["{}"]), wide)


def test_recursion_through_the_answer_is_fine_and_a_too_deep_answer_is_a_problem() -> None:
    tree = {"type": "object", "properties": {"child": {"$ref": "#"}}, "additionalProperties": False}
    model = ScriptedModel(['{"child": {"child": {}}}'])
    assert json.loads(ask(model, tree).message.content) == {"child": {"child": {}}}
    deep = '{"child": ' * 3000 + "{}" + "}" * 3000
    with pytest.raises(StructuredOutputError, match="nests deeper than 64 levels"):
        ask(ScriptedModel([deep, deep]), tree)


@pytest.mark.timeout(120)  # Python's re takes exponential time here: it would never end
def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}},
              "patternProperties": {"^(b+)+$": {"type": "integer"}}}
    evil = "a" * 50_000 + "!"
    key = "b" * 50_000 + "!"
    answer = json.dumps({"code": evil, key: "x"})
    with pytest.raises(StructuredOutputError, match="does not match"):
        ask(ScriptedModel([answer, answer]), schema)
    fine = json.dumps({"code": "aaaa", "bbbb": 1})
    assert ask(ScriptedModel([fine]), schema).message.content == fine
    closed = {**schema, "additionalProperties": False}
    with pytest.raises(StructuredOutputError, match="match none of the patterns"):
        ask(ScriptedModel([answer, answer]), {**closed, "properties": {}})
