"""OpenAIModel.embed against the fault-injecting OpenAI-compatible server on 127.0.0.1.

`POST {base_url}/embeddings` is checked in both directions: what homeo sends
(model, input, headers) and how it reads the answer (order by `index`, usage),
then each fault the server can inject and how it is classified for the router.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from homeo.llm.base import Embeddings, ModelError
from homeo.llm.providers.openai_http import ModelHTTPError, OpenAIModel

sys.path.insert(0, str(Path(__file__).parent.parent / "support"))
from faultserver import (
    FaultServer,
    Reply,
    embeddings_body,
    error,
    fault_server,
    vector_for,
)

TEXTS = ["the cat sat", "on the mat", "a third, longer text to embed"]


@pytest.fixture
def upstream() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


def embed(model: OpenAIModel, texts: list[str]) -> Embeddings:
    async def run() -> Embeddings:
        try:
            return await model.embed(texts)
        finally:
            await model.aclose()

    return asyncio.run(run())


def failure_of(model: OpenAIModel, texts: list[str]) -> ModelError:
    with pytest.raises(ModelError) as caught:
        embed(model, texts)
    return caught.value


def test_vectors_come_back_in_input_order_with_usage(upstream: FaultServer) -> None:
    model = OpenAIModel("text-embedder", base_url=upstream.base_url, api_key="sk-embed",
                        headers={"X-Team": "homeo"})

    result = embed(model, TEXTS)

    assert result.vectors == [vector_for(text) for text in TEXTS]
    assert result.usage.input_tokens == 12  # the server counts words
    assert result.usage.output_tokens == 0
    assert result.model == "text-embedder"
    assert upstream.embeddings.received == [{"model": "text-embedder", "input": TEXTS}]
    [headers] = upstream.embeddings.headers
    assert headers["authorization"] == "Bearer sk-embed"
    assert headers["x-team"] == "homeo"
    assert headers["content-type"] == "application/json"
    assert upstream.received == []  # nothing went to chat/completions


def test_items_listed_out_of_order_are_put_back_by_index(upstream: FaultServer) -> None:
    upstream.embeddings.script.append(Reply(body=embeddings_body(TEXTS, reverse=True)))

    result = embed(OpenAIModel("m", base_url=upstream.base_url), TEXTS)

    assert result.vectors == [vector_for(text) for text in TEXTS]
    assert result.model == "served-embedder"


def test_no_texts_make_no_request(upstream: FaultServer) -> None:
    result = embed(OpenAIModel("m", base_url=upstream.base_url), [])

    assert result.vectors == []
    assert upstream.embeddings.received == []


def test_texts_must_be_a_list_of_strings(upstream: FaultServer) -> None:
    failure = failure_of(OpenAIModel("m", base_url=upstream.base_url), "one text")  # type: ignore[arg-type]

    assert "list of strings" in str(failure)
    assert failure.retryable is False
    assert upstream.embeddings.received == []


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (400, False), (401, False)]
)
def test_error_statuses_are_classified_as_for_chat(
    upstream: FaultServer, status: int, retryable: bool
) -> None:
    upstream.embeddings.script.append(error(status, "embedding refused here"))

    failure = failure_of(OpenAIModel("m", base_url=upstream.base_url), TEXTS)

    assert isinstance(failure, ModelHTTPError)
    assert failure.status_code == status
    assert failure.retryable is retryable
    assert f"HTTP {status}" in str(failure)
    assert "embedding refused here" in str(failure)


def test_a_rate_limit_keeps_its_retry_after(upstream: FaultServer) -> None:
    upstream.embeddings.script.append(error(429, "slow down", **{"Retry-After": "4"}))

    failure = failure_of(OpenAIModel("m", base_url=upstream.base_url), TEXTS)

    assert isinstance(failure, ModelHTTPError)
    assert (failure.retryable, failure.retry_after) == (True, 4.0)


def test_a_server_that_hangs_times_out_and_may_be_retried(upstream: FaultServer) -> None:
    upstream.embeddings.script.append(Reply(delay=3.0))

    failure = failure_of(OpenAIModel("m", base_url=upstream.base_url, timeout=0.3), TEXTS)

    assert failure.retryable is True
    assert "did not answer within 0.3s" in str(failure)


def test_a_body_that_is_not_json_may_be_retried_as_for_chat(upstream: FaultServer) -> None:
    upstream.embeddings.script.append(Reply(body="<html>bad gateway</html>"))

    failure = failure_of(OpenAIModel("m", base_url=upstream.base_url), TEXTS)

    assert failure.retryable is True
    assert "not JSON" in str(failure)
    assert "bad gateway" in str(failure)


def test_the_wrong_number_of_vectors_is_a_clear_error(upstream: FaultServer) -> None:
    upstream.embeddings.script.append(Reply(body=embeddings_body(TEXTS[:2])))

    failure = failure_of(OpenAIModel("m", base_url=upstream.base_url), TEXTS)

    assert failure.retryable is False
    assert "answered 2 embeddings for 3 texts" in str(failure)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"object": "list"}, "without a data list"),
        ({"data": [{"index": 0, "embedding": [0.1]}, {"index": 0, "embedding": [0.2]}]},
         "indexes are not 0 to 1"),
        ({"data": [{"index": 0, "embedding": "AAAA"}, {"index": 1, "embedding": [0.2]}]},
         "embedding 0 that is not a list of numbers"),
        (["not", "an", "object"], "not an object"),
    ],
)
def test_malformed_answers_are_not_retried(
    upstream: FaultServer, body: object, problem: str
) -> None:
    upstream.embeddings.script.append(Reply(body=body))

    failure = failure_of(OpenAIModel("m", base_url=upstream.base_url), TEXTS[:2])

    assert failure.retryable is False
    assert problem in str(failure)


def test_an_unreachable_server_may_be_retried() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    failure = failure_of(OpenAIModel("m", base_url=f"http://127.0.0.1:{port}/v1"), TEXTS)

    assert failure.retryable is True
    assert "could not reach" in str(failure)


def test_one_model_serves_one_event_loop_after_another(upstream: FaultServer) -> None:
    # The CLI and the tests call a model from one asyncio.run, then close it from another.
    model = OpenAIModel("m", base_url=upstream.base_url)

    first = asyncio.run(model.embed(TEXTS[:1]))
    second = asyncio.run(model.embed(TEXTS[1:]))
    asyncio.run(model.aclose())

    assert first.vectors + second.vectors == [vector_for(text) for text in TEXTS]
    assert len(upstream.embeddings.received) == 2
