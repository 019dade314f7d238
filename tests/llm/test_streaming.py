"""Token streaming against the real fault-injecting server on 127.0.0.1:
`OpenAIModel.stream` on its own, then aliases (routers) built from
HOMEO_MODELS, which fail over only before the first token.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from homeo.config import Settings
from homeo.llm.base import (
    Message,
    Model,
    ModelError,
    ModelResponse,
    StreamEnd,
    StreamEvent,
    StreamInterrupted,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)
from homeo.llm.providers.openai_http import ModelHTTPError, OpenAIModel
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.llm.resolve import ModelCatalog
from homeo.llm.router import AllDeploymentsFailed

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
from faultserver import FaultServer, Reply, completion, error, fault_server  # noqa: E402

HELLO = [Message(role="user", content="hello")]
ADD_CALL = {"id": "call_7", "type": "function",
            "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
ADD = ToolSpec(name="add", parameters={"type": "object", "properties": {
    "a": {"type": "number"}, "b": {"type": "number"}}})


@pytest.fixture
def primary() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


@pytest.fixture
def secondary() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


async def collect(events: Any, into: list[StreamEvent] | None = None) -> list[StreamEvent]:
    """Every event of a stream; with `into`, also kept there as they come (for errors)."""
    seen = [] if into is None else into
    async for event in events:
        seen.append(event)
    return seen


def texts(events: list[StreamEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


def streamed(model: Model, **options: Any) -> tuple[list[StreamEvent], BaseException | None]:
    """Stream `model` to the end; the events received and the error that ended it, if any."""
    seen: list[StreamEvent] = []

    async def run() -> BaseException | None:
        try:
            await collect(model.stream(HELLO, **options), seen)
        except ModelError as failure:
            return failure
        finally:
            await model.aclose()
        return None

    return seen, asyncio.run(run())


def catalog(models: dict[str, Any], **settings: Any) -> ModelCatalog:
    base = {"router_backoff_base_seconds": 0.01, "router_backoff_max_seconds": 1.0,
            "router_attempt_timeout_seconds": 5.0, "router_retries": 0}
    return ModelCatalog(Settings(models=models, **{**base, **settings}), rng=random.Random(7))


def deployment(server: FaultServer, name: str, **extra: Any) -> dict[str, Any]:
    return {"model": "openai:m", "name": name, "base_url": server.base_url, **extra}


# OpenAIModel on its own


def test_text_arrives_in_several_deltas_then_the_whole_answer(primary: FaultServer) -> None:
    primary.default = Reply(body=completion("The capital of France is Paris."))

    events, failure = streamed(OpenAIModel("m", base_url=primary.base_url), max_tokens=9)

    assert failure is None
    assert texts(events) == ["The ", "capital ", "of ", "France ", "is ", "Paris."]
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.response.message.content == "The capital of France is Paris."
    assert (end.response.usage.input_tokens, end.response.usage.output_tokens) == (12, 5)
    [sent] = primary.received
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 9


def test_tool_call_pieces_are_assembled(primary: FaultServer) -> None:
    primary.default = Reply(body=completion(None, tool_calls=[ADD_CALL]))

    events, failure = streamed(OpenAIModel("m", base_url=primary.base_url), tools=[ADD])

    assert failure is None
    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(p.index, p.id, p.name) for p in pieces] == [
        (0, "call_7", "add"), (0, None, None), (0, None, None)]
    assert "".join(p.arguments for p in pieces) == '{"a": 2, "b": 3}'
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.response.message.tool_calls == [
        ToolCall(id="call_7", name="add", arguments={"a": 2, "b": 3})]
    assert primary.received[0]["tools"][0]["function"]["name"] == "add"


def test_a_slow_stream_is_yielded_as_it_arrives(primary: FaultServer) -> None:
    primary.default = Reply(body=completion("one two three four"), chunk_delay=0.2)
    model = OpenAIModel("m", base_url=primary.base_url)

    async def first_then_rest() -> tuple[int, list[StreamEvent]]:
        events = model.stream(HELLO)
        first = await anext(events)
        assert first == TextDelta("one ")
        sent_by_then = primary.chunks_sent
        rest = await collect(events)
        await model.aclose()
        return sent_by_then, rest

    sent_by_then, rest = asyncio.run(first_then_rest())

    # role chunk + "one " were sent; three words, the finish, usage and [DONE] were not
    assert sent_by_then < 4
    assert texts(rest) == ["two ", "three ", "four"]
    # The server counts a chunk after writing it: the client may be done first.
    deadline = time.monotonic() + 30
    while primary.chunks_sent < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert primary.chunks_sent == 8


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (400, False)])
def test_an_error_status_before_the_stream_follows_request_rules(
    primary: FaultServer, status: int, retryable: bool
) -> None:
    primary.default = error(status, "no stream for you", **{"Retry-After": "3"})

    events, failure = streamed(OpenAIModel("m", base_url=primary.base_url))

    assert events == []
    assert isinstance(failure, ModelHTTPError)
    assert (failure.status_code, failure.retryable, failure.retry_after) == (status, retryable, 3)
    assert "no stream for you" in str(failure)


def test_a_stream_cut_midway_is_a_retryable_error_after_its_deltas(primary: FaultServer) -> None:
    primary.default = Reply(body=completion("one two three four"), cut_after=2)

    events, failure = streamed(OpenAIModel("m", base_url=primary.base_url))

    assert texts(events) == ["one ", "two "]
    assert not any(isinstance(e, StreamEnd) for e in events)
    assert isinstance(failure, ModelError)
    assert failure.retryable is True
    assert "lost the connection" in str(failure)


def test_a_stream_that_hangs_before_its_first_token_times_out(primary: FaultServer) -> None:
    primary.default = Reply(body=completion("late"), first_chunk_delay=3.0)

    events, failure = streamed(OpenAIModel("m", base_url=primary.base_url, timeout=0.3))

    assert events == []
    assert isinstance(failure, ModelError)
    assert failure.retryable is True
    assert "did not answer within 0.3s" in str(failure)


# The scripted model and the default `Model.stream`


def test_the_scripted_model_streams_words_and_tool_call_pieces() -> None:
    events, _ = streamed(ScriptedModel(["Hello there, friend."]))
    assert texts(events) == ["Hello ", "there, ", "friend."]

    events, _ = streamed(ScriptedModel([tool_call("add", a=2, b=3)]))
    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(pieces) == 2
    assert "".join(p.arguments for p in pieces) == '{"a": 2, "b": 3}'


class WholeAnswerModel(Model):
    """A provider that only implements `request`."""

    async def request(self, messages: list[Message], tools: list[ToolSpec] | None = None,
                      **options: Any) -> ModelResponse:
        return ModelResponse(message=Message(role="assistant", content="all at once"))


def test_a_model_without_streaming_streams_its_whole_answer() -> None:
    events, failure = streamed(WholeAnswerModel())

    assert failure is None
    assert texts(events) == ["all at once"]
    assert isinstance(events[-1], StreamEnd)


# Through an alias: the router


def test_a_stream_silent_past_the_first_token_timeout_falls_back(
    primary: FaultServer, secondary: FaultServer
) -> None:
    primary.default = Reply(body=completion("too late"), first_chunk_delay=3.0)
    secondary.default = Reply(body=completion("from the second one"))
    models = catalog({"default": [deployment(primary, "primary"),
                                  deployment(secondary, "secondary", weight=0)]},
                     # long enough for the healthy secondary on a busy machine
                     router_first_token_timeout_seconds=1.0)

    events, failure = streamed(models.get("default"))

    assert failure is None
    assert texts(events) == ["from ", "the ", "second ", "one"]
    assert len(primary.received) == len(secondary.received) == 1
    assert models.deployments()[0][1].window() == (1, 1)  # primary: one failure


def test_a_stream_refused_before_its_first_token_is_retried_then_falls_back(
    primary: FaultServer, secondary: FaultServer
) -> None:
    primary.default = error(503, "overloaded")
    secondary.default = Reply(body=completion("fallback answer"))
    models = catalog({"default": [deployment(primary, "primary"),
                                  deployment(secondary, "secondary", weight=0)]},
                     router_retries=1)

    events, failure = streamed(models.get("default"))

    assert failure is None
    assert texts(events) == ["fallback ", "answer"]
    assert len(primary.received) == 2  # one try, one retry


def test_the_first_token_timeout_ends_the_call_when_nothing_answers(
    primary: FaultServer,
) -> None:
    primary.default = Reply(body=completion("late"), first_chunk_delay=3.0)
    models = catalog({"default": [deployment(primary, "primary")]}, router_retries=1,
                     router_first_token_timeout_seconds=0.2)

    events, failure = streamed(models.get("default"))

    assert events == []
    assert isinstance(failure, AllDeploymentsFailed)
    assert str(failure).count("primary: no first token within 0.2s") == 2


def test_a_stream_broken_after_its_first_token_is_not_restarted(
    primary: FaultServer, secondary: FaultServer
) -> None:
    primary.default = Reply(body=completion("one two three four"), cut_after=2)
    secondary.default = Reply(body=completion("never asked"))
    models = catalog({"default": [deployment(primary, "primary"),
                                  deployment(secondary, "secondary", weight=0)]},
                     router_retries=2)

    events, failure = streamed(models.get("default"))

    assert texts(events) == ["one ", "two "]
    assert isinstance(failure, StreamInterrupted)
    assert "the stream from primary broke after its first token" in str(failure)
    assert len(primary.received) == 1
    assert secondary.received == []
    assert models.deployments()[0][1].window() == (1, 1)


def test_an_open_breaker_is_skipped_before_streaming(
    primary: FaultServer, secondary: FaultServer
) -> None:
    primary.default = error(500, "down")
    secondary.default = Reply(body=completion("still here"))
    models = catalog({"default": [deployment(primary, "primary"),
                                  deployment(secondary, "secondary", weight=0)]},
                     breaker_min_calls=1, breaker_cooldown_seconds=600)

    for _ in range(2):
        events, failure = streamed(models.get("default"))
        assert failure is None
        assert texts(events) == ["still ", "here"]

    assert len(primary.received) == 1  # the second call found its breaker open
    assert dict(models.breaker_states())["primary"] == "open"


def test_a_cached_priced_alias_streams_a_repeat_from_the_cache(primary: FaultServer) -> None:
    primary.default = Reply(body=completion("cached words"))
    models = catalog({"default": [deployment(primary, "primary")]},
                     router_cache_seconds=60,
                     prices={"primary": {"input_per_million": 1_000_000,
                                         "output_per_million": 2_000_000}})

    async def twice() -> list[list[StreamEvent]]:
        try:
            return [await collect(models.get("default").stream(HELLO)) for _ in range(2)]
        finally:
            await models.aclose()

    first, second = asyncio.run(twice())

    assert texts(first) == ["cached ", "words"]
    assert isinstance(first[-1], StreamEnd)
    assert first[-1].response.usage.cost_usd == 12 * 1 + 5 * 2
    assert texts(second) == ["cached words"]
    assert isinstance(second[-1], StreamEnd)
    assert second[-1].response.usage.total_tokens == 0
    assert len(primary.received) == 1


def test_a_caller_leaving_mid_stream_gives_the_half_open_probe_back() -> None:
    from homeo.llm.breaker import BreakerPolicy, CircuitBreaker
    from homeo.llm.router import Deployment, RetryPolicy, Router

    now = [0.0]
    breaker = CircuitBreaker(BreakerPolicy(min_calls=1, cooldown_seconds=10, probes=1),
                             clock=lambda: now[0])
    breaker.record_failure()
    now[0] = 11.0
    assert breaker.state == "half_open"
    router = Router("default", [Deployment("scripted", ScriptedModel(["a b c"]), breaker)],
                    RetryPolicy(retries=0), clock=lambda: now[0])

    async def leave_after_the_first_word() -> TextDelta:
        events = router.stream(HELLO)
        first = await anext(events)
        await events.aclose()
        return first

    assert asyncio.run(leave_after_the_first_word()) == TextDelta("a ")
    assert breaker.state == "half_open"
    assert breaker.allow()  # the probe slot was given back: no verdict on the provider
