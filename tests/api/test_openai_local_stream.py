"""The official `openai` client streaming from the shipped local model through homeo.

The path is all real: client -> homeo's API on 127.0.0.1 -> router ->
LocalModel -> llama.cpp in-process, generating SmolLM2's answer token by token.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from homeo.llm.providers.local import LocalModel

# The context the llm tests load the model with, so both share one copy of it.
CONTEXT = 2048


@pytest.fixture
def homeo(serve: Callable[..., Any]) -> Any:
    return serve(
        with_worker=False, models={"tiny": [{"model": "local"}]}, local_model_context=CONTEXT
    )


@pytest.fixture
def client(homeo: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{homeo.url}/v1", api_key=homeo.key, max_retries=0, timeout=60
    ) as client:
        yield client


@pytest.mark.slow
def test_local_model_streams_its_answer_in_many_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=32,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    pieces = [c.choices[0].delta.content for c in chunks if c.choices if c.choices[0].delta.content]
    assert len(pieces) > 1
    assert "".join(pieces).strip()
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in {"stop", "length"}
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert len(pieces) <= usage.completion_tokens <= 32


@pytest.mark.slow
def test_client_that_hangs_up_stops_the_local_model(client: openai.OpenAI) -> None:
    local = LocalModel(n_ctx=CONTEXT)
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    before = local.tokens_generated()

    with client.chat.completions.create(
        model="tiny", messages=story, max_tokens=256, temperature=0.0, stream=True
    ) as stream:
        first = next(c for c in stream if c.choices and c.choices[0].delta.content)
    # A call after the hang-up waits its turn on the model: the hung-up
    # generation has stopped by the time it answers.
    probe = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=1
    )
    assert probe.usage is not None
    generated = local.tokens_generated() - before - probe.usage.completion_tokens

    assert first.choices[0].delta.content
    # Left alone this answer runs to 256 tokens (tests/llm/test_local.py runs
    # it to 64); the hang-up stopped it within the first few.
    assert 1 <= generated < 128


@pytest.mark.slow
def test_a_client_that_leaves_a_whole_answer_stops_the_local_model(
    homeo: Any, client: openai.OpenAI
) -> None:
    """Not streamed: homeo notices the hang-up while the model computes, and stops it."""
    local = LocalModel(n_ctx=CONTEXT)
    before = local.tokens_generated()
    body = json.dumps({"model": "tiny", "max_tokens": 256, "temperature": 0.0, "messages": [
        {"role": "user", "content": "Write a long story about a dragon."}]}).encode()
    host, port = homeo.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: homeo\r\n"
            b"authorization: Bearer " + homeo.key.encode() + b"\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        deadline = time.monotonic() + 120
        while not local._server().lock.locked():  # the answer is being generated
            assert time.monotonic() < deadline, "generation never started"
            time.sleep(0.005)
    # Hung up. A call after it waits its turn on the model: by the time it
    # answers, the abandoned generation has stopped.
    probe = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=1
    )
    assert probe.usage is not None
    generated = local.tokens_generated() - before - probe.usage.completion_tokens
    assert 1 <= generated < 128  # left alone it runs to 256
