"""The one-time export of all-MiniLM-L6-v2 to ONNX, done with torch at setup.

`export_minilm` traces the shipped sentence-transformers directory (the
transformer, then mean pooling over the attention mask, then L2
normalisation, all in one graph) with torch's TorchScript-based exporter
(`dynamo=False`: the dynamo exporter needs onnxscript, which homeo does not
install), copies the model's `tokenizer.json`, and checks the result against
sentence-transformers on varied sentences, long ones included, before it
replaces anything: an export whose vectors differ by more than
`TOLERANCE` is refused. Nothing here reaches the network.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from homeo.llm.base import ModelError
from homeo.llm.providers.minilm_onnx import (
    GRAPH_FILE,
    MANIFEST_FILE,
    TOKENIZER_FILE,
    Manifest,
    encode,
    open_graph,
)

TOLERANCE = 1e-4
OPSET = 17
# Sentences the export is checked on: short, punctuated, non-English, and
# longer than the 256 word pieces the model reads.
CHECK_TEXTS = [
    "hi",
    "What is the capital of France?",
    "Durable agents resume after a crash from their last finished step.",
    "Ünïcödé, 東京, emoji 🙂 and e-mail x@y.com at 3.14 o'clock.",
    " ".join(["the queue leases a job to one worker and renews the lease"] * 40),
]


class ExportError(ModelError):
    """The export could not be made, or its vectors do not match sentence-transformers'."""


@dataclass(frozen=True, slots=True)
class ExportReport:
    directory: Path
    graph_bytes: int
    max_abs_diff: float


def export_minilm(source: Path, target: Path, *, model_name: str, force: bool = False
                  ) -> ExportReport:
    """Export the sentence-transformers directory `source` to `target`; its
    vectors will be reported as `model_name`'s.
    An existing finished export is kept unless `force`; ExportError otherwise."""
    if (target / MANIFEST_FILE).exists() and not force:
        raise ExportError(f"{target} already holds an ONNX export: pass --force to redo it")
    config = {"model_name": model_name, **_sentence_config(source)}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Built beside the target and renamed into place, so a crash mid-export
        # never leaves a directory that looks finished.
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise ExportError(f"cannot write the export to {target}: {exc}") from exc
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users
    try:
        _trace(source, staging / GRAPH_FILE)
        shutil.copyfile(source / TOKENIZER_FILE, staging / TOKENIZER_FILE)
        (staging / MANIFEST_FILE).write_text(json.dumps(config, indent=2) + "\n")
        difference = _largest_difference(source, staging)
        if difference > TOLERANCE:
            raise ExportError(f"the ONNX export differs from sentence-transformers by"
                              f" {difference:.2e} (more than {TOLERANCE:.0e}): not installed")
        _replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(target, (target / GRAPH_FILE).stat().st_size, difference)


def _sentence_config(source: Path) -> dict[str, object]:
    """The manifest's max_seq_length and dimension, read from `source`,
    which must be a mean-pooled, normalised sentence-transformers model."""
    try:
        modules = json.loads((source / "modules.json").read_text())
        pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
        bert = json.loads((source / "sentence_bert_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{source} is not a sentence-transformers model directory: {exc}"
                          ) from exc
    kinds = [module.get("type", "").rsplit(".", 1)[-1] for module in modules]
    if kinds != ["Transformer", "Pooling", "Normalize"] or not pooling.get(
            "pooling_mode_mean_tokens"):
        raise ExportError(f"{source} is {' + '.join(kinds)} with pooling {pooling}: only"
                          " Transformer + mean Pooling + Normalize models can be exported")
    return {"max_seq_length": int(bert["max_seq_length"]),
            "dimension": int(pooling["word_embedding_dimension"]), "opset": OPSET}


def _trace(source: Path, graph: Path) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import onnx  # noqa: F401  (torch's exporter needs it; say so before tracing)
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise ExportError(f"the export needs torch, transformers and onnx ({exc}):"
                          " pip install 'homeo[local]'") from exc

    class Pooled(torch.nn.Module):
        """The transformer, mean pooling over real tokens, L2 normalisation."""

        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    try:
        encoder = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()
        example = torch.ones(2, 8, dtype=torch.long)
        inputs = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
        with warnings.catch_warnings(), torch.no_grad():
            # The tracer warns about Python branches on shapes; the check
            # against sentence-transformers below is what decides.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pooled(encoder), (example, example, torch.zeros_like(example)), str(graph),
                dynamo=False, input_names=inputs, output_names=["embedding"],
                dynamic_axes={**axes, "embedding": {0: "batch"}}, opset_version=OPSET)
    except ExportError:
        raise
    except Exception as exc:  # torch raises many kinds while tracing
        raise ExportError(f"torch could not export {source} to ONNX: {exc}") from exc


def _largest_difference(source: Path, staging: Path) -> float:
    """The largest absolute difference between the staged export's vectors and
    sentence-transformers' on CHECK_TEXTS, embedded together and one by one."""
    import numpy as np

    from homeo.llm.providers.minilm import shared_encoder

    expected = shared_encoder(source).encode(CHECK_TEXTS, normalize_embeddings=True,
                                             convert_to_numpy=True, show_progress_bar=False)
    session, tokenizer = open_graph(staging, Manifest.read(staging), 1)
    together = np.asarray(encode(session, tokenizer, CHECK_TEXTS, 32)[0])
    alone = np.asarray(encode(session, tokenizer, CHECK_TEXTS, 1)[0])
    return float(max(np.abs(together - expected).max(), np.abs(alone - expected).max()))


def _replace(staging: Path, target: Path) -> None:
    """Put `staging` at `target`, moving a previous export out of the way first."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
