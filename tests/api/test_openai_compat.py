"""The official `openai` client against homeo served by uvicorn on 127.0.0.1.

homeo's aliases point at a fault-injecting OpenAI-compatible server (also on
127.0.0.1) and at scripted models from tests/support/scriptkit.py, so the
whole path is real: client -> homeo's API -> router -> provider over HTTP.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
from faultserver import FaultServer, Reply, completion, error, fault_server  # noqa: E402

from tests.api.conftest import add_key  # noqa: E402

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two numbers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"},
                                                        "b": {"type": "number"}},
                       "required": ["a", "b"]},
    },
}
ADD_CALL = {"id": "call_7", "type": "function",
            "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}


# A deployment's timeout: the faults below answer later than this (3 s), and a
# healthy answer on a busy machine within it.
TIMEOUT_SECONDS = 2.0


@pytest.fixture
def upstream() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


@pytest.fixture
def homeo(serve: Callable[..., Any], upstream: FaultServer) -> Any:
    models = {
        "default": [{"model": "openai:upstream-model", "name": "upstream",
                     "base_url": upstream.base_url, "timeout_seconds": TIMEOUT_SECONDS}],
        "resilient": [{"model": "openai:upstream-model", "name": "upstream",
                       "base_url": upstream.base_url, "timeout_seconds": TIMEOUT_SECONDS},
                      {"model": "scripted:scriptkit:echo_model", "weight": 0}],
        "calc": [{"model": "scripted:scriptkit:calc_model"}],
    }
    return serve(with_worker=False, models=models, router_retries=1,
                 router_backoff_base_seconds=0.01, breaker_min_calls=2,
                 breaker_cooldown_seconds=600)


@pytest.fixture
def client(homeo: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{homeo.url}/v1", api_key=homeo.key, max_retries=0,
                       timeout=30) as client:
        yield client


def test_models_lists_the_aliases(client: openai.OpenAI) -> None:
    assert sorted(model.id for model in client.models.list()) == ["calc", "default", "resilient"]


def test_providers_are_listed_before_any_call(homeo: Any) -> None:
    providers = homeo.client.get("/v1/providers").json()["providers"]

    assert [(p["name"], p["model"], p["aliases"], p["breaker"]["state"]) for p in providers] == [
        ("scripted:scriptkit:calc_model", "scripted:scriptkit:calc_model", ["calc"], "closed"),
        ("upstream", "openai:upstream-model", ["default", "resilient"], "closed"),
        ("scripted:scriptkit:echo_model", "scripted:scriptkit:echo_model", ["resilient"],
         "closed"),
    ]


def test_chat_goes_through_to_the_provider(client: openai.OpenAI, upstream: FaultServer) -> None:
    upstream.default = Reply(body=completion("Paris."))

    reply = client.chat.completions.create(
        model="default",
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}],
        max_tokens=20,
        temperature=0.1,
    )

    assert reply.object == "chat.completion"
    assert reply.model == "default"
    assert reply.choices[0].message.content == "Paris."
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 5)
    [sent] = upstream.received
    assert sent == {
        "model": "upstream-model",
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Capital of France?"}],
        "max_tokens": 20,
        "temperature": 0.1,
    }


def test_tool_calls_round_trip(client: openai.OpenAI, upstream: FaultServer) -> None:
    upstream.script = [Reply(body=completion(None, tool_calls=[ADD_CALL])),
                       Reply(body=completion("2 + 3 = 5"))]
    history: list[Any] = [{"role": "user", "content": "What is 2 + 3?"}]

    first = client.chat.completions.create(model="default", messages=history, tools=[ADD])

    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    assert (call.id, call.function.name) == ("call_7", "add")
    assert json.loads(call.function.arguments) == {"a": 2, "b": 3}
    history += [first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "5"}]

    second = client.chat.completions.create(model="default", messages=history, tools=[ADD])

    assert second.choices[0].message.content == "2 + 3 = 5"
    assert upstream.received[0]["tools"] == [ADD]
    assert upstream.received[1]["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_7", "type": "function",
             "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]},
        {"role": "tool", "tool_call_id": "call_7", "content": "5"},
    ]


def test_tool_calls_from_a_scripted_deployment(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="calc", messages=[{"role": "user", "content": "6*7"}],
        tools=[{"type": "function", "function": {"name": "calculate", "parameters": {}}}],
    )

    [call] = reply.choices[0].message.tool_calls
    assert call.function.name == "calculate"
    assert json.loads(call.function.arguments) == {"expression": "6*7"}


def test_streaming_text_and_usage(client: openai.OpenAI, upstream: FaultServer) -> None:
    upstream.default = Reply(body=completion("Hello there."))

    stream = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Hello there.")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens == 17


def test_streaming_tool_calls(client: openai.OpenAI, upstream: FaultServer) -> None:
    upstream.default = Reply(body=completion(None, tool_calls=[ADD_CALL]))

    chunks = list(client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "2+3"}], tools=[ADD],
        stream=True))

    # As the upstream sent them: the id and name, then the arguments in pieces.
    calls = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    assert [(c.index, c.id, c.function.name) for c in calls] == [
        (0, "call_7", "add"), (0, None, None), (0, None, None)]
    assert "".join(c.function.arguments for c in calls) == '{"a": 2, "b": 3}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_streaming_sends_each_delta_as_it_arrives(
    client: openai.OpenAI, upstream: FaultServer
) -> None:
    upstream.default = Reply(body=completion("one two three four five"), chunk_delay=0.1)

    stream = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "count"}], stream=True)
    deltas = []
    sent_at_first_delta = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if sent_at_first_delta is None:
                sent_at_first_delta = upstream.chunks_sent
            deltas.append(chunk.choices[0].delta.content)

    assert deltas == ["one ", "two ", "three ", "four ", "five"]
    # The first word reached the client while the upstream was still generating.
    assert sent_at_first_delta is not None and sent_at_first_delta < 5
    assert upstream.received[0]["stream"] is True


def test_streaming_fails_over_before_the_first_token(
    client: openai.OpenAI, upstream: FaultServer
) -> None:
    upstream.default = Reply(body=completion("too late"), first_chunk_delay=3.0)

    chunks = list(client.chat.completions.create(
        model="resilient", messages=[{"role": "user", "content": "are you there?"}],
        stream=True))

    deltas = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert deltas == ["echo: ", "are ", "you ", "there?"]
    assert len(upstream.received) == 2  # a try and a retry, each silent past the timeout


def test_a_stream_that_fails_before_its_first_token_is_an_http_error(
    client: openai.OpenAI, upstream: FaultServer
) -> None:
    upstream.default = error(401, "bad upstream key")

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "hi"}], stream=True)

    assert caught.value.status_code == 502
    assert "bad upstream key" in caught.value.message


def test_a_stream_broken_after_its_first_token_ends_with_an_error_event(
    client: openai.OpenAI, upstream: FaultServer
) -> None:
    upstream.default = Reply(body=completion("one two three four"), cut_after=2)

    deltas = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(
                model="resilient", messages=[{"role": "user", "content": "count"}],
                stream=True):
            deltas.append(chunk.choices[0].delta.content)

    assert deltas == ["", "one ", "two "]
    assert "the stream from upstream broke after its first token" in caught.value.message
    assert len(upstream.received) == 1  # not restarted, not passed to the fallback


def test_retries_then_falls_back_then_opens_the_breaker(
    client: openai.OpenAI, upstream: FaultServer, homeo: Any
) -> None:
    upstream.default = error(500, "upstream exploded")

    for _ in range(2):
        reply = client.chat.completions.create(
            model="resilient", messages=[{"role": "user", "content": "still there?"}])
        assert reply.choices[0].message.content == "echo: still there?"

    assert len(upstream.received) == 2  # one try and one retry, then the breaker opened
    providers = {p["name"]: p for p in homeo.client.get("/v1/providers").json()["providers"]}
    assert providers["upstream"]["breaker"]["state"] == "open"
    assert providers["upstream"]["aliases"] == ["default", "resilient"]
    assert providers["scripted:scriptkit:echo_model"]["breaker"]["state"] == "closed"
    metrics = homeo.client.get("/metrics").text
    assert 'homeo_llm_breaker_state{deployment="upstream",state="open"} 1.0' in metrics

    reply = client.chat.completions.create(
        model="resilient", messages=[{"role": "user", "content": "and now?"}])
    assert reply.choices[0].message.content == "echo: and now?"
    assert len(upstream.received) == 2  # open: not called

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="default", messages=[{"role": "user",
                                                                   "content": "x"}])
    assert caught.value.status_code == 503
    assert "upstream: circuit open" in caught.value.message


def test_a_refused_request_is_a_400_with_the_providers_message(
    client: openai.OpenAI, upstream: FaultServer
) -> None:
    upstream.default = error(400, "max_tokens is too large: 999999")

    with pytest.raises(openai.BadRequestError, match="max_tokens is too large: 999999"):
        client.chat.completions.create(model="resilient", max_tokens=999999,
                                       messages=[{"role": "user", "content": "hi"}])
    assert len(upstream.received) == 1


def test_a_hanging_provider_is_a_503_after_its_timeouts(
    client: openai.OpenAI, upstream: FaultServer
) -> None:
    upstream.default = Reply(body=completion(), delay=3.0)

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="default", messages=[{"role": "user",
                                                                   "content": "hi"}])

    assert caught.value.status_code == 503
    assert f"no answer within {TIMEOUT_SECONDS:g}s" in caught.value.message


def test_unknown_model_is_a_404_naming_the_models(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="the models are: calc, default, resilient"):
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user",
                                                                 "content": "hi"}])


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"model": "default", "messages": []}, 422, "messages"),
        ({"model": "default", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 422, "n"),
        ({"model": "default", "messages": [{"role": "tool", "content": "5"}]}, 400,
         "needs a tool_call_id"),
        ({"model": "default", "messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "add", "arguments": "{"}}]}]},
         400, "arguments must be a JSON object"),
        ({"model": "default", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x"}}]}]}, 422, "content"),
    ],
)
def test_bad_requests_say_what_is_wrong(
    homeo: Any, body: dict[str, Any], status: int, text: str
) -> None:
    response = homeo.client.post("/v1/chat/completions", json=body)

    assert response.status_code == status
    assert text in response.json()["error"]["message"]


CITY = {"type": "object", "properties": {"city": {"type": "string"}},
        "required": ["city"], "additionalProperties": False}


def test_response_format_json_schema_is_checked_and_repaired_once(
    client: openai.OpenAI, upstream: FaultServer, homeo: Any
) -> None:
    upstream.script = [Reply(body=completion("Paris")),
                       Reply(body=completion('{"city": "Paris"}'))]

    reply = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Capital of France?"}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "city", "schema": CITY, "strict": True}},
    )

    assert json.loads(reply.choices[0].message.content) == {"city": "Paris"}
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (24, 10)
    metrics = homeo.client.get("/metrics").text
    assert 'homeo_llm_tokens_total{direction="input",model="default"} 24.0' in metrics
    first, second = upstream.received
    assert first["response_format"]["json_schema"]["schema"] == CITY
    assert "the answer is not valid JSON" in second["messages"][-1]["content"]


def test_an_answer_that_stays_invalid_is_a_502_that_says_why(
    client: openai.OpenAI, upstream: FaultServer
) -> None:
    upstream.default = Reply(body=completion('{"town": "Paris"}'))

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "Capital of France?"}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "city", "schema": CITY}},
        )

    assert caught.value.status_code == 502
    assert "even after a repair attempt" in caught.value.message
    assert "'city' is a required property" in caught.value.message
    assert len(upstream.received) == 2


def test_a_bad_schema_is_the_callers_400(client: openai.OpenAI, upstream: FaultServer) -> None:
    with pytest.raises(openai.BadRequestError, match="response_format: the JSON schema is"):
        client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "x", "schema": {"type": 5}}},
        )
    assert upstream.received == []


def test_json_object_asks_for_any_object(client: openai.OpenAI, upstream: FaultServer) -> None:
    upstream.default = Reply(body=completion('{"anything": [1, 2]}'))

    reply = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "JSON please"}],
        response_format={"type": "json_object"},
    )

    assert json.loads(reply.choices[0].message.content) == {"anything": [1, 2]}
    assert upstream.received[0]["response_format"]["json_schema"]["schema"] == {"type": "object"}


def test_a_streamed_json_answer_is_sent_once_it_is_checked(
    client: openai.OpenAI, upstream: FaultServer
) -> None:
    upstream.script = [Reply(body=completion("not json")),
                       Reply(body=completion('{"city": "Paris"}'))]

    chunks = list(client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Capital of France?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}},
        stream=True, stream_options={"include_usage": True}))

    deltas = [c.choices[0].delta.content for c in chunks if c.choices and
              c.choices[0].delta.content]
    assert deltas == ['{"city": "Paris"}']
    assert chunks[-1].usage.completion_tokens == 10  # the repair attempt counted too


def test_chat_calls_count_against_the_tenants_budget_and_stop_at_it(
    serve: Callable[..., Any], upstream: FaultServer
) -> None:
    models = {"default": [{"model": "openai:upstream-model", "name": "upstream",
                           "base_url": upstream.base_url}]}
    homeo = serve(with_worker=False, models=models, tenant_tokens_per_day=30)
    store = homeo.runtime.backends.store
    other_key = add_key(homeo, "other")
    ask = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}

    def used_after(client: openai.OpenAI, tenant: str, expected: int) -> None:
        client.chat.completions.create(**ask)
        polls = 500  # usage is written just after the answer is sent
        while store.usage(tenant).total_tokens < expected and polls:
            polls -= 1
            time.sleep(0.01)
        assert store.usage(tenant).total_tokens == expected

    with openai.OpenAI(base_url=f"{homeo.url}/v1", api_key=homeo.key, max_retries=0) as mine, \
            openai.OpenAI(base_url=f"{homeo.url}/v1", api_key=other_key,
                          max_retries=0) as theirs:
        used_after(mine, "default", 17)  # each answer is 12 + 5 tokens
        used_after(mine, "default", 34)  # started under the limit, so it ran
        with pytest.raises(openai.RateLimitError, match="HOMEO_TENANT_TOKENS_PER_DAY=30"):
            mine.chat.completions.create(**ask)
        with pytest.raises(openai.RateLimitError, match="budget"):
            mine.chat.completions.create(**ask, stream=True)
        used_after(theirs, "other", 17)  # another tenant's budget is its own
    assert len(upstream.received) == 3


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"$ref": "#"}, "references lead back to themselves"),
        ({"$ref": "https://example.com/s.json"}, "is not local"),
        ({"type": "string", "pattern": "(?=a)"}, "cannot run on the linear-time regex engine"),
        ("deep", "nests deeper than 32 levels"),
    ],
)
def test_a_dangerous_schema_is_the_callers_400_naming_the_problem(
    homeo: Any, upstream: FaultServer, schema: Any, problem: str
) -> None:
    if schema == "deep":
        schema = {"type": "string"}
        for _ in range(400):
            schema = {"type": "array", "items": schema}
    response = homeo.client.post("/v1/chat/completions", json={
        "model": "default", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    })
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "bad_request"
    assert response.json()["error"]["message"].startswith("response_format: ")
    assert problem in response.json()["error"]["message"]
    assert upstream.received == []


@pytest.mark.timeout(120)  # with Python's re the pattern below never finishes
def test_a_catastrophic_pattern_does_not_stall_the_server(
    homeo: Any, upstream: FaultServer
) -> None:
    upstream.default = Reply(body=completion(json.dumps({"code": "a" * 50_000 + "!"})))
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}}}
    response = homeo.client.post("/v1/chat/completions", json={
        "model": "default", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    })
    assert response.status_code == 502
    assert "does not match '^(a+)+$'" in response.json()["error"]["message"]
    assert homeo.client.get("/healthz").status_code == 200


def test_chat_on_an_embedding_model_is_a_400_naming_the_chat_models(
    serve: Callable[..., Any]
) -> None:
    homeo = serve(with_worker=False, models={
        "default": [{"model": "scripted:scriptkit:echo_model"}],
        "fast": [{"model": "scripted:scriptkit:echo_model"}],
        "embedding": [{"model": "minilm"}],
    })

    with openai.OpenAI(base_url=f"{homeo.url}/v1", api_key=homeo.key, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="embedding", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.body["message"] == (
            "model 'embedding' only makes embeddings (POST /v1/embeddings) and cannot chat;"
            " the chat models are: default, fast")
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model="fast", input=["hi"])
        assert caught.value.body["message"] == (
            "model 'fast' does not make embeddings, it only chats (POST /v1/chat/completions);"
            " the embedding models are: embedding")


NAMED_ADD = {"type": "function", "function": {"name": "add"}}


@pytest.mark.parametrize("choice", ["required", NAMED_ADD, "auto"])
def test_tool_choice_and_stop_go_on_to_an_openai_compatible_provider(
    client: openai.OpenAI, upstream: FaultServer, choice: Any
) -> None:
    upstream.default = Reply(body=completion(None, tool_calls=[ADD_CALL]))

    reply = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "2+3"}], tools=[ADD],
        tool_choice=choice, stop=["\n\n", "END"])

    assert reply.choices[0].message.tool_calls[0].function.name == "add"
    [sent] = upstream.received
    assert (sent["tool_choice"], sent["stop"]) == (choice, ["\n\n", "END"])


def test_one_stop_string_goes_on_as_a_list(client: openai.OpenAI, upstream: FaultServer) -> None:
    client.chat.completions.create(model="default", stop="END",
                                   messages=[{"role": "user", "content": "hi"}])

    assert upstream.received[0]["stop"] == ["END"]
    assert "tool_choice" not in upstream.received[0]


def test_a_scripted_model_obeys_stop_streamed_or_not(
    client: openai.OpenAI, upstream: FaultServer
) -> None:
    ask = {"model": "resilient", "messages": [{"role": "user", "content": "one two three"}],
           "stop": [" three", " two"]}
    # `resilient` tries the upstream first: it fails, so the scripted echo answers.
    upstream.default = error(500, "down")
    reply = client.chat.completions.create(**ask)
    chunks = list(client.chat.completions.create(**ask, stream=True))

    assert reply.choices[0].message.content == "echo: one"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: one"


def test_a_named_tool_choice_is_obeyed_by_a_scripted_model(client: openai.OpenAI) -> None:
    calculate = {"type": "function", "function": {"name": "calculate", "parameters": {}}}
    reply = client.chat.completions.create(
        model="calc", messages=[{"role": "user", "content": "6*7"}], tools=[ADD, calculate],
        tool_choice={"type": "function", "function": {"name": "calculate"}})

    [call] = reply.choices[0].message.tool_calls
    assert call.function.name == "calculate"

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="calc", messages=[{"role": "user", "content": "6*7"}], tools=[ADD, calculate],
            tool_choice=NAMED_ADD)
    assert "scripted reply is not a call to 'add'" in caught.value.message


@pytest.mark.parametrize(
    ("extra", "problem"),
    [({"tool_choice": "required"}, "tool_choice requires a tool call, but no tools are offered"),
     ({"tools": [ADD], "tool_choice": {"type": "function", "function": {"name": "sub"}}},
      "tool_choice names tool 'sub', which is not offered (tools: add)"),
     ({"tools": [ADD], "tool_choice": "required", "stop": ["a", "b", "c", "d", "e"]},
      None)],
)
def test_a_tool_choice_that_cannot_be_met_is_a_400(
    client: openai.OpenAI, upstream: FaultServer, extra: dict[str, Any], problem: str
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="default",
                                       messages=[{"role": "user", "content": "hi"}], **extra)

    if problem is None:  # more than OpenAI's 4 stop sequences
        assert caught.value.status_code == 422 and "stop" in caught.value.message
    else:
        assert caught.value.status_code == 400 and caught.value.body["message"] == problem
    assert upstream.received == []
