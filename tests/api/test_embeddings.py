"""/v1/embeddings with the official `openai` client: the default `embedding`
alias runs the real all-MiniLM-L6-v2 in process."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.api.conftest import SUPPORT, Served, Servers, add_key
from tests.api.test_runs import assert_error

pytestmark = pytest.mark.slow  # loads the embedding model


@pytest.fixture(scope="module")
def homeo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server, and one loaded model, for the whole module."""
    sys.path.insert(0, str(SUPPORT))
    servers = Servers(tmp_path_factory.mktemp("embeddings"))
    models = {"embedding": [{"model": "minilm"}],
              "chat": [{"model": "scripted:scriptkit:echo_model"}]}
    try:
        yield servers.start(with_worker=False, models=models)
    finally:
        servers.close()
        sys.path.remove(str(SUPPORT))


@pytest.fixture
def client(homeo: Served) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{homeo.url}/v1", api_key=homeo.key, max_retries=0,
                       timeout=60) as client:
        yield client


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.mark.parametrize("encoding", [{}, {"encoding_format": "float"}])
def test_real_embeddings_place_related_texts_closer(client: openai.OpenAI,
                                                    encoding: dict[str, str]) -> None:
    texts = ["A cat sleeps on the sofa.", "A kitten naps on the couch.",
             "Quarterly revenue fell by four percent."]
    # Unless told, the client asks for base64 and decodes it; "float" is plain JSON.
    answer = client.embeddings.create(model="embedding", input=texts, **encoding)
    vectors = [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-3 for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert answer.model == "embedding"
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > len(texts)


def test_one_string_gives_one_vector_equal_to_its_batch_entry(client: openai.OpenAI) -> None:
    single = client.embeddings.create(model="embedding", input="hello world",
                                      encoding_format="float")
    batch = client.embeddings.create(model="embedding", input=["x", "hello world"],
                                     encoding_format="float")
    assert len(single.data) == 1
    assert cosine(single.data[0].embedding, batch.data[1].embedding) > 0.9999


def test_embedding_tokens_count_for_the_tenant(homeo: Served) -> None:
    store = homeo.runtime.backends.store
    key = add_key(homeo, "counted")
    with openai.OpenAI(base_url=f"{homeo.url}/v1", api_key=key, max_retries=0) as client:
        answer = client.embeddings.create(model="embedding", input=["one", "two three"])
    used = answer.usage.prompt_tokens
    polls = 500  # the usage is written just after the answer is sent
    while store.usage("counted").input_tokens < used and polls:
        polls -= 1
        time.sleep(0.01)
    assert store.usage("counted").input_tokens == used


@pytest.mark.parametrize(("body", "status", "problem"), [
    ({"model": "embedding", "input": []}, 400, "input is empty"),
    ({"model": "embedding", "input": ""}, 400, "input is empty"),
    ({"model": "embedding", "input": ["fine", " "]}, 400, "input[1] is empty"),
    ({"model": "embedding", "input": [1, 2, 3]}, 400, "token ids is not supported"),
    ({"model": "embedding", "input": ["x"] * 2049}, 400, "at most 2048"),
    ({"model": "embedding", "input": "x", "encoding_format": "hex"}, 422, "encoding_format"),
    ({"model": "embedding", "input": "x", "dimensions": 256}, 400, "384-dimension"),
    ({"model": "nope", "input": "x"}, 404, "the models are: chat, embedding"),
    ({"model": "chat", "input": "x"}, 400, "does not make embeddings"),
    ({"input": "x"}, 422, "model"),
])
def test_bad_requests_say_what_is_wrong(homeo: Served, body: dict[str, Any], status: int,
                                        problem: str) -> None:
    response = homeo.client.post("/v1/embeddings", json=body)
    kinds = {400: "bad_request", 404: "not_found", 422: "invalid_request"}
    assert problem in assert_error(response, status, kinds[status])
