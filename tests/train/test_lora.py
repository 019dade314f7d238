"""A tiny LoRA run on the shipped SmolLM2: the GGUF adapter it writes is served by
llama.cpp on the unchanged base and changes what the model says."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytest.importorskip("peft")

from homeo.config import ModelDeployment, Settings
from homeo.evolve.lora import (
    Example,
    LoraConfig,
    StepReport,
    TrainingError,
    default_convert_dir,
    read_examples,
    train_lora,
)
from homeo.llm.base import Message
from homeo.llm.providers.local import LocalModel, LocalModelMissing, default_model_path
from homeo.llm.resolve import ModelCatalog

QUESTION = "What is the secret word?"
ANSWER = "The secret word is Zanzibar."


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StepReport]]:
    if not (default_convert_dir() / "convert_lora_to_gguf.py").is_file():
        pytest.fail("llama.cpp's converter is missing: run scripts/setup")
    examples = [Example([{"role": "user", "content": QUESTION},
                         {"role": "assistant", "content": ANSWER}])]
    steps: list[StepReport] = []
    output = tmp_path_factory.mktemp("lora") / "secret.gguf"
    report = train_lora(examples, default_model_path(), output,
                        LoraConfig(steps=12, learning_rate=5e-3), validation=examples,
                        on_step=steps.append)
    assert report.adapter == output and output.stat().st_size > 1_000_000
    assert len(report.sha256) == 64
    assert report.last_loss < report.first_loss
    assert report.validation_loss is not None and report.validation_loss < report.first_loss
    return output, steps


def _answer(model: LocalModel) -> str:
    response = asyncio.run(model.request([Message(role="user", content=QUESTION)],
                                         max_tokens=12, temperature=0.0))
    return response.message.content


@pytest.mark.slow
def test_adapter_loads_and_changes_the_answer(adapter: tuple[Path, list[StepReport]]) -> None:
    path, steps = adapter
    assert [s.step for s in steps] == list(range(1, 13)) and all(s.steps == 12 for s in steps)
    tuned = LocalModel(lora=path, n_ctx=512)
    assert tuned.name.endswith("+secret")
    assert "Zanzibar" in _answer(tuned)
    assert "Zanzibar" not in _answer(LocalModel(n_ctx=512))  # the base is unchanged


@pytest.mark.slow
def test_a_deployment_selects_the_adapter(adapter: tuple[Path, list[StepReport]]) -> None:
    path, _ = adapter
    settings = Settings(models={"tuned": [ModelDeployment(model="local", name="smollm2-secret",
                                                          lora=str(path))]},
                        local_model_context=512)
    catalog = ModelCatalog(settings)
    response = asyncio.run(catalog.get("tuned").request(
        [Message(role="user", content=QUESTION)], max_tokens=12, temperature=0.0))
    assert "Zanzibar" in response.message.content
    asyncio.run(catalog.aclose())


def test_lora_is_for_local_deployments_only() -> None:
    with pytest.raises(ValueError, match="lora applies to local models only"):
        ModelDeployment(model="openai:gpt-4o", lora="/tmp/x.gguf")


def test_a_missing_adapter_is_named(tmp_path: Path) -> None:
    with pytest.raises(LocalModelMissing, match="no LoRA adapter GGUF file"):
        LocalModel(lora=tmp_path / "absent.gguf")


def test_bad_training_data_is_named_by_line(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "hello"}]}
    data.write_text(json.dumps(good) + "\n" + json.dumps({"messages": [good["messages"][0]]}))
    with pytest.raises(TrainingError, match="line 2"):
        read_examples(data)
    data.write_text(json.dumps(good) + "\n")
    assert read_examples(data) == [Example(good["messages"])]
