"""MiniLM on ONNX Runtime: the export made with torch, checked against
sentence-transformers on the same weights, and the runtime the `minilm` model
picks. Everything runs for real on the CPU."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from homeo.config import Settings
from homeo.doctor import check_embedding_runtime
from homeo.llm.base import Message, ModelError, Unsupported
from homeo.llm.providers import minilm_onnx
from homeo.llm.providers.minilm import DEFAULT_MODEL_NAME, MiniLM, default_model_dir, shared_encoder
from homeo.llm.providers.minilm_export import ExportError, export_minilm
from homeo.llm.providers.minilm_onnx import (
    MANIFEST_FILE,
    MiniLMOnnx,
    choose_runtime,
    default_onnx_dir,
)
from homeo.llm.resolve import ModelCatalog

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
SRC = Path(__file__).resolve().parents[2] / "src"

WORDS = ("agent queue worker durable lease checkpoint memory vector tenant retry budget "
         "Ünïcödé 東京 café naïve 🙂 e-mail x@y.com 3.14 don't (parenthesised) re-embedding "
         "THE Quick brown fox").split()


def varied_sentences() -> list[str]:
    """Short, punctuated, non-English, and long: some past 256 word pieces."""
    rng = np.random.default_rng(11)
    texts = ["hi", "A", "What is the capital of France?", "  padded with spaces  ",
             "Sunlight is scattered by air molecules; blue scatters the most."]
    for length in (3, 12, 40, 90, 180, 260, 400, 700):
        texts.append(" ".join(rng.choice(WORDS, size=length)))
    return texts


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh export, made here with torch (as scripts/setup does)."""
    target = tmp_path_factory.mktemp("export") / "minilm-onnx"
    report = export_minilm(default_model_dir(), target, model_name=DEFAULT_MODEL_NAME)
    assert report.directory == target
    assert report.max_abs_diff < 1e-4
    return target


@pytest.fixture(scope="module")
def reference() -> object:
    """sentence-transformers on the same shipped weights."""
    return shared_encoder()


def _embed(model: MiniLMOnnx | MiniLM, texts: list[str]):  # noqa: ANN202
    return asyncio.run(model.embed(texts))


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_vectors_match_sentence_transformers(export_dir: Path, reference: object,
                                             batch_size: int) -> None:
    texts = varied_sentences()
    expected = reference.encode(texts, normalize_embeddings=True,  # type: ignore[attr-defined]
                                convert_to_numpy=True, show_progress_bar=False)

    got = np.asarray(_embed(MiniLMOnnx(export_dir, batch_size=batch_size), texts).vectors)

    assert got.shape == (len(texts), 384)
    assert np.abs(got - expected).max() < 1e-4
    cosines = (got * expected).sum(axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosines.min() > 0.9999


@pytest.mark.slow
def test_model_name_and_token_counts_match_sentence_transformers(export_dir: Path) -> None:
    texts = varied_sentences()
    onnx = _embed(MiniLMOnnx(export_dir), texts)
    torch_side = _embed(MiniLM(), texts)

    # The same name: vectors stored by either runtime stay valid under the other.
    assert onnx.model == torch_side.model == "all-MiniLM-L6-v2"
    assert onnx.usage.input_tokens == torch_side.usage.input_tokens


@pytest.mark.slow
def test_a_long_text_is_cut_at_256_word_pieces(export_dir: Path) -> None:
    model = MiniLMOnnx(export_dir)
    long = " ".join(["durable"] * 300) + " and then something else entirely"
    tail_changed = " ".join(["durable"] * 300) + " with a different ending"

    first, second = _embed(model, [long, tail_changed]).vectors
    counted = _embed(model, [long]).usage.input_tokens

    assert counted == 256
    assert np.abs(np.asarray(first) - np.asarray(second)).max() == 0.0


@pytest.mark.slow
def test_vectors_come_back_in_input_order_and_batching_changes_nothing(export_dir: Path) -> None:
    texts = varied_sentences()
    together = np.asarray(_embed(MiniLMOnnx(export_dir, batch_size=3), texts).vectors)
    alone = np.asarray([_embed(MiniLMOnnx(export_dir), [text]).vectors[0] for text in texts])

    assert np.abs(together - alone).max() < 1e-5
    # A text is closest to itself: the rows were not shuffled by the length sort.
    assert list((together @ alone.T).argmax(axis=1)) == list(range(len(texts)))


def test_a_missing_export_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="homeo models convert-minilm") as caught:
        MiniLMOnnx(tmp_path / "nope")

    assert caught.value.retryable is False


def test_an_unreadable_manifest_says_to_redo_the_export(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text("{not json")

    with pytest.raises(ModelError, match=r"unreadable .* convert-minilm --force"):
        MiniLMOnnx(tmp_path)


@pytest.mark.slow
def test_a_corrupt_graph_fails_to_load_with_model_error(export_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in (MANIFEST_FILE, "tokenizer.json"):
        (broken / name).write_bytes((export_dir / name).read_bytes())
    (broken / "model.onnx").write_bytes((export_dir / "model.onnx").read_bytes()[:4096])

    with pytest.raises(ModelError, match="could not load the MiniLM export .* --force"):
        _embed(MiniLMOnnx(broken), ["hello"])
    assert str(broken) not in minilm_onnx._loaded


@pytest.mark.parametrize(
    ("texts", "complaint"),
    [
        (["fine", 42], "text 1 is a int, not a string"),
        (["fine", "  "], "text 1 is empty"),
        ("a bare string", "texts must be a list of strings, got str"),
    ],
)
def test_bad_input_is_refused_before_loading(tmp_path: Path, texts: object,
                                             complaint: str) -> None:
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(
        {"model_name": "m", "max_seq_length": 8, "dimension": 4}))
    model = MiniLMOnnx(tmp_path)  # no graph: loading it would fail

    with pytest.raises(ModelError, match=complaint):
        asyncio.run(model.embed(texts))  # type: ignore[arg-type]
    assert asyncio.run(model.embed([])).vectors == []
    assert str(model.path) not in minilm_onnx._loaded


def test_request_refuses_and_names_a_chat_model(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(
        {"model_name": "m", "max_seq_length": 8, "dimension": 4}))

    with pytest.raises(Unsupported, match="embeddings only"):
        asyncio.run(MiniLMOnnx(tmp_path).request([Message(role="user", content="hi")]))


def test_the_runtime_is_onnx_exactly_when_the_export_is_there(export_dir: Path,
                                                               tmp_path: Path) -> None:
    assert choose_runtime("auto", export_dir) == "onnx"
    assert choose_runtime("onnx", export_dir) == "onnx"
    assert choose_runtime("sentence-transformers", export_dir) == "sentence-transformers"
    assert choose_runtime("auto", tmp_path) == "sentence-transformers"
    with pytest.raises(ModelError, match="HOMEO_EMBED_RUNTIME=onnx .* convert-minilm"):
        choose_runtime("onnx", tmp_path)


def test_the_catalog_builds_minilm_on_the_chosen_runtime(export_dir: Path,
                                                         tmp_path: Path) -> None:
    onnx = ModelCatalog(Settings(embed_onnx_dir=export_dir, embed_threads=2)).get("minilm")
    forced = ModelCatalog(Settings(embed_onnx_dir=export_dir,
                                   embed_runtime="sentence-transformers")).get("minilm")
    absent = ModelCatalog(Settings(embed_onnx_dir=tmp_path)).get("minilm")

    assert isinstance(onnx, MiniLMOnnx) and onnx.threads == 2
    assert isinstance(forced, MiniLM)
    assert isinstance(absent, MiniLM)
    with pytest.raises(ModelError, match="convert-minilm"):
        ModelCatalog(Settings(embed_onnx_dir=tmp_path, embed_runtime="onnx")).get("minilm")


def test_doctor_names_the_embedding_runtime(export_dir: Path, tmp_path: Path) -> None:
    onnx = check_embedding_runtime(Settings(embed_onnx_dir=export_dir))
    fallback = check_embedding_runtime(Settings(embed_onnx_dir=tmp_path))
    refused = check_embedding_runtime(Settings(embed_onnx_dir=tmp_path, embed_runtime="onnx"))

    assert (onnx.status, onnx.detail) == ("ok", f"ONNX Runtime, export at {export_dir} (minilm)")
    assert fallback.status == "info"
    assert fallback.detail.startswith("sentence-transformers on torch (no ONNX export at")
    assert refused.status == "missing" and "convert-minilm" in (refused.fix or "")


def test_an_existing_export_is_kept_without_force(export_dir: Path) -> None:
    before = (export_dir / "model.onnx").stat().st_mtime_ns

    with pytest.raises(ExportError, match="--force"):
        export_minilm(default_model_dir(), export_dir, model_name=DEFAULT_MODEL_NAME)
    assert (export_dir / "model.onnx").stat().st_mtime_ns == before


def test_only_mean_pooled_normalised_models_are_exported(tmp_path: Path) -> None:
    source = tmp_path / "cls-model"
    (source / "1_Pooling").mkdir(parents=True)
    (source / "modules.json").write_text(json.dumps(
        [{"type": "sentence_transformers.models.Transformer"},
         {"type": "sentence_transformers.models.Pooling"}]))
    (source / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 4, "pooling_mode_cls_token": True}))
    (source / "sentence_bert_config.json").write_text('{"max_seq_length": 8}')

    with pytest.raises(ExportError, match="only Transformer \\+ mean Pooling \\+ Normalize"):
        export_minilm(source, tmp_path / "out", model_name="x")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cls-model"]


NO_TORCH = r"""
import asyncio, json, sys
from homeo.config import Settings
from homeo.llm.resolve import ModelCatalog
model = ModelCatalog(Settings()).get("embedding")
vectors = asyncio.run(model.embed(["does this import torch?"])).vectors
heavy = sorted(name for name in sys.modules
               if name.split(".")[0] in ("torch", "transformers", "sentence_transformers"))
print(json.dumps({"dimension": len(vectors[0]), "heavy": heavy, "torch": "torch" in sys.modules}))
"""


@pytest.mark.slow
def test_the_default_embedding_alias_never_imports_torch(tmp_path: Path) -> None:
    if not minilm_onnx.onnx_export_present(default_onnx_dir()):
        message = (f"no ONNX export at {default_onnx_dir()}: run homeo models convert-minilm"
                   " (scripts/setup does)")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    env.update(PYTHONPATH=str(SRC), HOMEO_DATA_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True,
                          env=env, timeout=300, check=False)

    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures == {"dimension": 384, "heavy": [], "torch": False}
