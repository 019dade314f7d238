"""LoRA fine-tuning of the local GGUF model on CPU, written out as a GGUF adapter.

transformers reads (and de-quantizes) the GGUF once; the float weights are cached
as safetensors beside the Python environment. peft trains a rank-8 adapter on the
seven projections of every layer, and llama.cpp's own `convert_lora_to_gguf.py`
(unpacked by scripts/setup) turns it into the GGUF adapter that `LocalModel`
applies on the unchanged base (a deployment's `lora` field).

The loss is taken on the assistant's last turn only: the prompt is context.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_BASE_DONE = "homeo-base.json"  # written last: a cache without it is unfinished


class TrainingError(Exception):
    """Training could not start or finish; the message says what to do."""


@dataclass(frozen=True)
class Example:
    """One chat: the turns before the last are the prompt, the last (the
    assistant's) is what the model learns to say."""

    messages: list[dict[str, str]]


@dataclass(frozen=True)
class LoraConfig:
    steps: int = 20
    learning_rate: float = 1e-3
    rank: int = 8
    alpha: int = 16
    threads: int = 1
    max_tokens: int = 512  # an example longer than this is cut
    seed: int = 0


@dataclass(frozen=True)
class StepReport:
    step: int
    steps: int
    loss: float
    seconds: float


@dataclass(frozen=True)
class LoraReport:
    adapter: Path
    base: Path
    steps: int
    examples: int
    first_loss: float
    last_loss: float
    validation_loss: float | None
    seconds: float
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {"adapter": str(self.adapter), "base": str(self.base), "steps": self.steps,
                "examples": self.examples, "first_loss": self.first_loss,
                "last_loss": self.last_loss, "validation_loss": self.validation_loss,
                "seconds": round(self.seconds, 3), "sha256": self.sha256}


def default_convert_dir() -> Path:
    """Where scripts/setup unpacks llama.cpp's converter and gguf-py."""
    return Path(sys.prefix) / "share" / "homeo" / "llama.cpp-convert"


def default_cache_dir() -> Path:
    """Where de-quantized base weights are cached (one folder per GGUF file)."""
    return Path(sys.prefix) / "share" / "homeo" / "lora-base"


def read_examples(path: Path) -> list[Example]:
    """Examples from a JSONL file, one `{"messages": [{"role", "content"}, ...]}` a line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise TrainingError(f"cannot read the training data {path}: {error}") from None
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            examples.append(example_from(json.loads(line)))
        except (json.JSONDecodeError, TrainingError) as error:
            raise TrainingError(f"{path} line {number}: {error}") from None
    if not examples:
        raise TrainingError(f"{path} has no examples; `homeo train curate` makes a data set")
    return examples


def example_from(data: Any) -> Example:
    messages = data.get("messages") if isinstance(data, dict) else None
    if (not isinstance(messages, list) or len(messages) < 2
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                       and isinstance(m.get("content"), str) for m in messages)):
        raise TrainingError('an example is {"messages": [{"role": ..., "content": ...}, ...]}'
                            " with at least a prompt and an answer")
    if messages[-1]["role"] != "assistant":
        raise TrainingError("an example's last message is the assistant's answer")
    return Example([{"role": m["role"], "content": m["content"]} for m in messages])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_base(gguf: Path, cache_dir: Path) -> Path:
    """The float (safetensors) copy of `gguf` that transformers and the converter
    read, made once per GGUF file."""
    target = cache_dir / f"{gguf.stem}-{file_sha256(gguf)[:12]}"
    if (target / _BASE_DONE).exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    partial = Path(tempfile.mkdtemp(prefix=".part-", dir=_made(cache_dir)))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    # The weights are plain floats now: saving must not claim they are GGUF-quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / _BASE_DONE).write_text(json.dumps({"gguf": str(gguf)}))
    if target.exists() and not (target / _BASE_DONE).exists():  # an unfinished attempt
        shutil.rmtree(target)
    try:
        partial.rename(target)
    except OSError:  # another process finished the same copy first
        shutil.rmtree(partial)
    return target


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _encode(tokenizer: Any, example: Example, max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids of the whole chat, and labels that are -100 (ignored) on the prompt."""
    prompt = tokenizer.apply_chat_template(example.messages[:-1], tokenize=False,
                                           add_generation_prompt=True)
    whole = tokenizer.apply_chat_template(example.messages, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(whole, add_special_tokens=False)["input_ids"][:max_tokens]
    labels = [-100 if index < len(prompt_ids) else token for index, token in enumerate(ids)]
    if all(label == -100 for label in labels):
        raise TrainingError(f"an example's prompt fills all {max_tokens} tokens; raise"
                            " max_tokens or shorten it")
    return ids, labels


def train_lora(
    examples: Sequence[Example],
    gguf: Path,
    output: Path,
    config: LoraConfig = LoraConfig(),
    *,
    validation: Sequence[Example] = (),
    cache_dir: Path | None = None,
    convert_dir: Path | None = None,
    on_step: Callable[[StepReport], None] | None = None,
) -> LoraReport:
    """Fine-tune `gguf` on `examples` for `config.steps` steps (one example a
    step, in turn) and write the GGUF adapter to `output`."""
    if not examples:
        raise TrainingError("no examples to train on")
    if config.steps < 1:
        raise TrainingError("steps must be at least 1")
    convert_dir = convert_dir or default_convert_dir()
    converter = convert_dir / "convert_lora_to_gguf.py"
    if not converter.is_file():
        raise TrainingError(f"llama.cpp's LoRA converter is not at {converter}: run"
                            " scripts/setup (it unpacks it from the llama-cpp-python sdist)")
    try:
        import peft
        import torch
    except ImportError:
        raise TrainingError("LoRA training needs the [train] extra:"
                            " pip install 'homeo[train]'") from None
    started = time.perf_counter()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    base = cached_base(gguf, cache_dir or default_cache_dir())
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = peft.get_peft_model(model, peft.LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0,
        target_modules=list(PROJECTIONS), task_type="CAUSAL_LM"))
    encoded = [_encode(tokenizer, example, config.max_tokens) for example in examples]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=config.learning_rate)
    model.train()
    losses = []
    for step in range(config.steps):
        began = time.perf_counter()
        ids, labels = encoded[step % len(encoded)]
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.item()))
        if on_step is not None:
            on_step(StepReport(step + 1, config.steps, losses[-1], time.perf_counter() - began))
    validation_loss = None
    if validation:
        model.eval()
        with torch.no_grad():
            scores = [float(model(input_ids=torch.tensor([ids]),
                                  labels=torch.tensor([labels])).loss)
                      for ids, labels in (_encode(tokenizer, e, config.max_tokens)
                                          for e in validation)]
        validation_loss = sum(scores) / len(scores)
    with tempfile.TemporaryDirectory(prefix="homeo-lora-") as scratch:
        model.save_pretrained(scratch)
        _convert(converter, convert_dir, base, Path(scratch), output)
    return LoraReport(output, gguf, config.steps, len(examples), losses[0], losses[-1],
                      validation_loss, time.perf_counter() - started, file_sha256(output))


def _convert(converter: Path, convert_dir: Path, base: Path, adapter: Path,
             output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "PYTHONPATH": str(convert_dir / "gguf-py")}
    done = subprocess.run(
        [sys.executable, str(converter), "--base", str(base), "--outtype", "f32",
         "--outfile", str(output), str(adapter)],
        capture_output=True, text=True, env=environment, check=False)
    if done.returncode != 0 or not output.is_file():
        raise TrainingError(f"llama.cpp's converter failed (exit {done.returncode}):"
                            f" {done.stderr[-2000:]}")
