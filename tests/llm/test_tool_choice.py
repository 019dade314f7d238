"""`tool_choice` and `stop` through the Model interface: the scripted model
obeys and records them, and the router, cache and price wrappers pass them on."""

from __future__ import annotations

import asyncio
import random

import pytest

from homeo.config import ModelDeployment, Settings
from homeo.llm.base import Message, ModelError, NamedTool, ToolSpec, cut_at_stop
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.llm.resolve import ModelCatalog

ADD = ToolSpec(name="add", parameters={"type": "object", "properties": {}})
SUB = ToolSpec(name="sub", parameters={"type": "object", "properties": {}})
HI = [Message(role="user", content="hi")]


def test_cut_at_stop_ends_before_the_earliest_sequence() -> None:
    assert cut_at_stop("one, two, three", [", three", "two"]) == "one, "
    assert cut_at_stop("one", ["x", ""]) == "one"
    assert cut_at_stop("one", None) == "one"


def test_the_scripted_model_records_and_obeys_stop() -> None:
    model = ScriptedModel(["Paris.\nUser: and Rome?"])

    reply = asyncio.run(model.request(HI, stop=["\nUser:"]))

    assert reply.message.content == "Paris."
    assert model.stops == [["\nUser:"]]


def test_the_scripted_model_shows_a_function_only_the_named_tool() -> None:
    seen: list[list[str]] = []

    def reply(messages: list[Message], tools: list[ToolSpec]) -> Message:
        seen.append([tool.name for tool in tools])
        return tool_call(tools[0].name)

    model = ScriptedModel(reply)
    called = asyncio.run(model.request(HI, [ADD, SUB], tool_choice=NamedTool("sub")))

    assert called.message.tool_calls[0].name == "sub"
    assert seen == [["sub"]]
    assert model.tool_choices == [NamedTool("sub")]


@pytest.mark.parametrize(
    ("script", "choice", "problem"),
    [("just words", "required", "scripted reply is not a tool call"),
     (tool_call("add"), NamedTool("sub"), "scripted reply is not a call to 'sub'"),
     (tool_call("add"), NamedTool("mul"), "tool_choice names tool 'mul', which is not offered")],
)
def test_the_scripted_model_refuses_a_reply_that_breaks_tool_choice(
    script: Message | str, choice: NamedTool | str, problem: str
) -> None:
    with pytest.raises(ModelError, match=problem):
        asyncio.run(ScriptedModel([script]).request(HI, [ADD, SUB], tool_choice=choice))


def test_an_alias_passes_tool_choice_and_stop_through_its_wrappers() -> None:
    settings = Settings(
        models={"default": [ModelDeployment(model="scripted:json:dumps")]},
        router_cache_seconds=60,
        prices={"default": {"input_per_million": 1.0}},
    )
    catalog = ModelCatalog(settings, rng=random.Random(1))
    scripted = ScriptedModel(["echo. stop here", "echo. stop here", tool_call("add")])
    catalog.add("scripted:json:dumps", scripted)  # what the deployment resolves to
    alias = catalog.get("default")

    async def ask() -> list[str]:
        first = await alias.request(HI, stop=["."])
        again = await alias.request(HI, stop=["."])  # the same request: from the cache
        other = await alias.request(HI, stop=[" stop"])  # another stop: not the same request
        forced = await alias.request(HI, [ADD], tool_choice="required")
        return [first.message.content, again.message.content, other.message.content,
                forced.message.tool_calls[0].name]

    assert asyncio.run(ask()) == ["echo", "echo", "echo.", "add"]
    assert scripted.stops == [["."], [" stop"], None]
    assert scripted.tool_choices == [None, None, "required"]
