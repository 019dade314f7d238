"""MiniLM with the shipped all-MiniLM-L6-v2 weights, run for real on the CPU."""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from homeo.llm.base import Embeddings, Message, ModelError, Unsupported
from homeo.llm.providers import minilm
from homeo.llm.providers.minilm import MiniLM, default_model_dir

# Each query has exactly one document that answers it.
RETRIEVAL = [
    ("How do I reset my forgotten password?",
     "To recover your account, click 'Forgot password' and follow the emailed link."),
    ("What is the capital of France?",
     "Paris is the largest city of France and the seat of its government."),
    ("Which foods are high in protein?",
     "Eggs, lentils, chicken breast and Greek yogurt are rich sources of protein."),
    ("Why is the sky blue?",
     "Sunlight is scattered by air molecules, and shorter blue wavelengths scatter the most."),
    ("How can I speed up my Python program?",
     "Profile the code first, then vectorise hot loops with NumPy or move them to C."),
]
# Documents that share a query's words but do not answer it. (A sentence that
# only repeats "the sky was blue" outranks the explanation for MiniLM, so it is
# not among them: the test checks meaning, not the model's known word bias.)
DISTRACTORS = [
    "Choose a strong password of at least twelve characters and never reuse it.",
    "Capital letters in French titles follow different rules than in English.",
    "Protein folding can now be predicted by computer models such as AlphaFold.",
    "Sky diving requires a parachute and several days of training.",
    "The python is a large snake that kills its prey by constriction.",
]


@pytest.fixture(scope="module")
def model() -> MiniLM:
    shared = MiniLM()
    _embed(shared, ["load the weights once for the whole module"])
    return shared


def _embed(model: MiniLM, texts: list[str]) -> Embeddings:
    return asyncio.run(model.embed(texts))


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _close(a: list[float], b: list[float], tolerance: float = 1e-5) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= tolerance


def test_default_model_dir_is_the_packaged_sentence_transformer() -> None:
    folder = default_model_dir()

    assert (folder / "modules.json").is_file()
    with (folder / "model.safetensors").open("rb") as weights:
        assert len(weights.read(8)) == 8  # a safetensors file opens with its header length


def test_missing_directory_is_a_model_error_that_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        MiniLM(str(tmp_path / "nope"))

    assert caught.value.retryable is False
    assert "nope" in str(caught.value)
    assert "pip install 'homeo[local]'" in str(caught.value)


def test_request_refuses_and_names_a_chat_model(tmp_path: Path) -> None:
    # Unsupported: the caller's mistake (a 400 from the API), never worth a retry.
    with pytest.raises(Unsupported) as caught:
        asyncio.run(MiniLM(str(tmp_path)).request([Message(role="user", content="hi")]))

    assert caught.value.retryable is False
    assert "embeddings only" in str(caught.value)
    assert "`local`" in str(caught.value)


def test_empty_list_gives_no_vectors_without_loading(tmp_path: Path) -> None:
    # tmp_path holds no model: loading it would fail, so an answer proves nothing loaded.
    empty_folder = MiniLM(str(tmp_path))
    result = asyncio.run(empty_folder.embed([]))

    assert result.vectors == []
    assert result.usage.input_tokens == 0
    assert str(empty_folder.path) not in minilm._loaded


@pytest.mark.parametrize(
    ("texts", "complaint"),
    [
        (["fine", 42], "text 1 is a int, not a string"),
        (["fine", None], "text 1 is a NoneType, not a string"),
        (["fine", ""], "text 1 is empty"),
        (["   \n"], "text 0 is empty"),
        ("a bare string", "texts must be a list of strings, got str"),
    ],
)
def test_bad_input_is_refused_before_loading(tmp_path: Path, texts: object, complaint: str) -> None:
    empty_folder = MiniLM(str(tmp_path))
    with pytest.raises(ModelError) as caught:
        asyncio.run(empty_folder.embed(texts))  # type: ignore[arg-type]

    assert complaint in str(caught.value)
    assert caught.value.retryable is False
    assert str(empty_folder.path) not in minilm._loaded


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        MiniLM(batch_size=0)


@pytest.mark.slow
def test_a_directory_that_is_not_a_model_fails_to_load_with_model_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")

    with pytest.raises(ModelError, match="could not load") as caught:
        _embed(MiniLM(str(tmp_path)), ["hello"])

    assert caught.value.retryable is False


@pytest.mark.slow
def test_vectors_are_384_plain_floats_of_unit_length(model: MiniLM) -> None:
    result = _embed(model, ["The cat sat on the mat.", "Quarterly revenue grew by 12 percent."])

    assert result.model == "all-MiniLM-L6-v2"
    assert len(result.vectors) == 2
    for vector in result.vectors:
        assert len(vector) == 384
        assert all(type(value) is float for value in vector)
        assert math.isclose(math.sqrt(_dot(vector, vector)), 1.0, abs_tol=1e-5)


@pytest.mark.slow
def test_related_sentences_are_closer_than_unrelated_ones(model: MiniLM) -> None:
    cat, kitten, revenue, car, automobile = _embed(
        model,
        [
            "The cat sat on the mat.",
            "A kitten is resting on a rug.",
            "Quarterly revenue grew by 12 percent.",
            "My car broke down on the motorway.",
            "The automobile stopped working on the highway.",
        ],
    ).vectors

    assert _dot(cat, kitten) > _dot(cat, revenue) + 0.2
    assert _dot(car, automobile) > _dot(car, kitten) + 0.2
    assert _dot(car, automobile) > _dot(car, revenue) + 0.2


@pytest.mark.slow
def test_each_query_ranks_its_own_document_first(model: MiniLM) -> None:
    texts = [document for _, document in RETRIEVAL] + DISTRACTORS
    queries = _embed(model, [query for query, _ in RETRIEVAL]).vectors
    documents = _embed(model, texts).vectors

    for index, query in enumerate(queries):
        scores = [_dot(query, document) for document in documents]
        best = max(range(len(scores)), key=scores.__getitem__)
        assert best == index, f"{RETRIEVAL[index][0]!r} ranked {texts[best]!r} first"


@pytest.mark.slow
def test_a_batch_gives_the_same_vectors_as_one_text_at_a_time(model: MiniLM) -> None:
    texts = [query for query, _ in RETRIEVAL] + ["short", "a somewhat longer text " * 10]
    # A batch size of 3 makes the texts span several padded batches.
    batched = _embed(MiniLM(batch_size=3), texts).vectors

    for text, vector in zip(texts, batched, strict=True):
        [alone] = _embed(model, [text]).vectors
        assert _close(vector, alone), text


@pytest.mark.slow
def test_vectors_come_back_in_input_order(model: MiniLM) -> None:
    texts = ["first: a dog barks", "second: interest rates rise", "third: it is raining"]

    forward = _embed(model, texts).vectors
    backward = _embed(model, texts[::-1]).vectors

    assert all(_close(a, b) for a, b in zip(forward, backward[::-1], strict=True))
    assert not _close(forward[0], forward[1], tolerance=0.1)


@pytest.mark.slow
def test_token_counts_are_the_tokenizers(model: MiniLM) -> None:
    short = _embed(model, ["hello world"]).usage.input_tokens
    longer = _embed(model, ["hello world, this sentence has quite a few more words"])
    both = _embed(model, ["hello world", "hello world, this sentence has quite a few more words"])

    assert short == 4  # [CLS] hello world [SEP]
    assert longer.usage.input_tokens > short
    assert both.usage.input_tokens == short + longer.usage.input_tokens
    assert both.usage.output_tokens == 0


@pytest.mark.slow
def test_a_long_text_is_cut_to_max_seq_length(model: MiniLM) -> None:
    limit = minilm._loaded_model(model.path, model.threads).encoder.max_seq_length
    # "word" is one token; [CLS] and [SEP] take two of the limit.
    long_text = "word " * 5000
    prefix = "word " * (limit - 2)

    long_result = _embed(model, [long_text])
    [prefix_vector] = _embed(model, [prefix]).vectors

    assert limit == 256
    assert long_result.usage.input_tokens == limit
    assert _close(long_result.vectors[0], prefix_vector)


@pytest.mark.slow
def test_concurrent_calls_share_one_loaded_model(model: MiniLM) -> None:
    texts = [[query] for query, _ in RETRIEVAL]
    loaded = minilm._loaded[str(model.path)]

    async def all_at_once() -> list[Embeddings]:
        others = [MiniLM() for _ in texts]
        return await asyncio.gather(*(m.embed(t) for m, t in zip(others, texts, strict=True)))

    results = asyncio.run(all_at_once())

    assert minilm._loaded[str(model.path)] is loaded  # new MiniLMs reuse the loaded weights
    for result, text in zip(results, texts, strict=True):
        assert _close(result.vectors[0], _embed(model, text).vectors[0])


@pytest.mark.slow
def test_waiting_calls_leave_asyncio_shared_threads_free(model: MiniLM) -> None:
    # The store and the queue's lease heartbeats run in asyncio's default pool;
    # embeddings waiting their turn must not hold its threads.
    texts = ["a sentence of a dozen words or so, long enough to take a while"] * 64

    async def scenario() -> tuple[int, int]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
        embeds = [asyncio.create_task(model.embed(texts)) for _ in range(3)]
        await asyncio.sleep(0)  # let every embed start and queue on the model's thread
        await asyncio.to_thread(sum, [1, 2])
        pending = sum(not task.done() for task in embeds)
        await asyncio.gather(*embeds)
        return pending, sum(task.result().usage.input_tokens > 0 for task in embeds)

    pending, finished = asyncio.run(scenario())

    assert pending >= 1
    assert finished == 3
