"""all-MiniLM-L6-v2 on ONNX Runtime: the default runtime of the `minilm` embeddings.

The same weights as `minilm.py`, exported once (at setup, with torch: see
`minilm_export.py` and `homeo models convert-minilm`) to an ONNX graph that
includes the mean pooling and the L2 normalisation, plus the model's own
`tokenizer.json`, run here with onnxruntime, `tokenizers` and numpy alone.
The vectors match sentence-transformers' to within about 2e-7 (the export refuses
anything worse than 1e-4), so both runtimes report the same model name and
stored vectors stay valid when the runtime changes.

Why this is the default: measured side by side by bench/embeddings.py on
the same 2-core machine (2026-12-02, busy with other work; README, Measured),
on 1 thread each, a fresh process on this runtime was ready in 1 s instead of
14 to 25 s and held 207 MiB instead of 502 MiB, a one-text call took 26 ms
instead of 58 to 62 ms at the median, and batches of 64 chunks ran at the
same rate within the noise (0.88x and 1.20x of sentence-transformers in two
runs). torch is never imported on this path. sentence-transformers stays
selectable (HOMEO_EMBED_RUNTIME=sentence-transformers) and is what the export
itself and the safety classifier run on.

As in `minilm.py`, a directory is loaded once per process and its calls run
one at a time on that model's own thread. onnxruntime runs each call on
`threads` intra-op threads that sleep rather than spin when idle (1 by
default: bench/local_threads.py found a second thread faster for this process
on a busy 2-core machine, by about as much as two runs of one setting
differed, and it takes a core from every other process there).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from homeo.llm.base import Embedder, Embeddings, ModelError, Usage
from homeo.llm.providers.embed_texts import check_texts

GRAPH_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
# Written last by the export, so a directory with it is complete.
MANIFEST_FILE = "homeo-onnx.json"
CONVERT_COMMAND = "homeo models convert-minilm"
CONVERT_HINT = f"{CONVERT_COMMAND} (scripts/setup runs it)"

Runtime = Literal["onnx", "sentence-transformers"]


def default_onnx_dir() -> Path:
    """Where the export goes unless told otherwise: beside the Python environment
    homeo is installed in, so every data dir and every process of it shares one
    copy, and a fresh environment (scripts/setup) makes its own."""
    return Path(sys.prefix) / "share" / "homeo" / "all-MiniLM-L6-v2-onnx"


def onnx_export_present(directory: Path) -> bool:
    """Whether `directory` holds a finished export (its manifest is written last)."""
    return all((directory / name).is_file() for name in (GRAPH_FILE, TOKENIZER_FILE,
                                                          MANIFEST_FILE))


def choose_runtime(wanted: str, directory: Path) -> Runtime:
    """The runtime the `minilm` model runs on: `wanted` ("auto", "onnx" or
    "sentence-transformers"), with "auto" meaning ONNX Runtime when `directory`
    holds an export. ModelError if "onnx" is wanted and there is none."""
    if wanted == "sentence-transformers":
        return "sentence-transformers"
    if onnx_export_present(directory):
        return "onnx"
    if wanted == "onnx":
        raise ModelError(f"HOMEO_EMBED_RUNTIME=onnx but there is no ONNX export of MiniLM at"
                         f" {directory}: run {CONVERT_HINT}")
    return "sentence-transformers"


@dataclass(frozen=True, slots=True)
class Manifest:
    """What the export recorded about the graph beside it."""

    model_name: str
    max_seq_length: int
    dimension: int

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_FILE
        try:
            data = json.loads(path.read_text())
            return cls(str(data["model_name"]), int(data["max_seq_length"]),
                       int(data["dimension"]))
        except FileNotFoundError:
            raise ModelError(f"no ONNX export of MiniLM at {directory}: run {CONVERT_HINT}"
                             ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"the ONNX export's manifest {path} is unreadable ({exc}):"
                             f" run {CONVERT_COMMAND} --force") from exc


@dataclass(frozen=True, slots=True)
class _LoadedGraph:
    """One onnxruntime session and tokenizer in this process, and the one thread
    that runs their calls."""

    session: Any
    tokenizer: Any
    worker: ThreadPoolExecutor


_loaded: dict[str, _LoadedGraph] = {}
_loading = threading.Lock()


def _loaded_graph(directory: Path, manifest: Manifest, threads: int) -> _LoadedGraph:
    key = str(directory)
    with _loading:
        if key not in _loaded:
            session, tokenizer = open_graph(directory, manifest, threads)
            worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm-onnx")
            _loaded[key] = _LoadedGraph(session, tokenizer, worker)
        return _loaded[key]


def open_graph(directory: Path, manifest: Manifest, threads: int) -> tuple[Any, Any]:
    """A new onnxruntime session on the export in `directory`, and its tokenizer."""
    try:
        import onnxruntime
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ModelError(f"minilm on ONNX Runtime needs onnxruntime and tokenizers ({exc}):"
                         " pip install 'homeo[local]'") from exc
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle intra-op threads sleep rather than spin: spinning takes the time
    # slices other processes on a busy machine need (the reason for OMP passive).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # onnxruntime's arena keeps the largest batch's buffers for good: one
    # batch of 64 chunks of 256 word pieces left a process at 722 MiB with it
    # and 299 MiB without, at the same speed.
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    try:
        session = onnxruntime.InferenceSession(
            str(directory / GRAPH_FILE), options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
    except Exception as exc:  # onnxruntime's Fail/InvalidGraph, tokenizers' Exception
        raise ModelError(f"ONNX Runtime could not load the MiniLM export at {directory}"
                         f" ({exc}): run {CONVERT_COMMAND} --force") from exc
    # tokenizer.json pads and cuts to 128; sentence-transformers cuts at the
    # model's max_seq_length and pads a batch to its longest text.
    tokenizer.enable_truncation(max_length=manifest.max_seq_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    return session, tokenizer


class MiniLMOnnx(Embedder):
    """Sentence embeddings from the ONNX export of all-MiniLM-L6-v2 in `directory`.
    It makes embeddings only: `request` refuses.

    Each text is cut to the model's `max_seq_length` word pieces (256, as
    sentence-transformers does) before it is embedded.
    """

    name = "minilm"

    def __init__(self, directory: Path, *, batch_size: int = 32, threads: int = 1) -> None:
        """`threads`: onnxruntime's intra-op threads, set when the graph loads.
        ModelError if `directory` holds no finished export."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.path = Path(directory).resolve()
        self.manifest = Manifest.read(self.path)
        self.model_name = self.manifest.model_name
        self.batch_size = batch_size
        self.threads = threads

    async def embed(self, texts: list[str]) -> Embeddings:
        """One L2-normalised vector per text, in input order. `usage.input_tokens`
        counts the word pieces embedded (special tokens included, after
        truncation). Texts must be non-empty strings."""
        check_texts(texts)
        if not texts:
            return Embeddings(vectors=[], usage=Usage(), model=self.model_name)
        loaded = _loaded.get(str(self.path)) or await asyncio.to_thread(
            _loaded_graph, self.path, self.manifest, self.threads)
        vectors, tokens = await asyncio.get_running_loop().run_in_executor(
            loaded.worker, encode, loaded.session, loaded.tokenizer, texts, self.batch_size)
        return Embeddings(vectors=vectors, usage=Usage(input_tokens=tokens),
                          model=self.model_name)


def encode(session: Any, tokenizer: Any, texts: list[str], batch_size: int
           ) -> tuple[list[list[float]], int]:
    """The vectors of `texts` from `session` and `tokenizer` (see `open_graph`),
    and how many word pieces were embedded."""
    import numpy as np

    # Longest first, as sentence-transformers does: texts of like length share
    # a batch, so little of it is padding.
    order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
    vectors: list[Any] = [None] * len(texts)
    tokens = 0
    try:
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            encodings = tokenizer.encode_batch([texts[index] for index in chosen])
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feed = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                    "attention_mask": mask,
                    "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}
            (matrix,) = session.run(["embedding"], feed)
            tokens += int(mask.sum())
            for row, index in enumerate(chosen):
                vectors[index] = matrix[row].tolist()
    except Exception as exc:  # onnxruntime raises its own Fail/RuntimeException types
        raise ModelError(f"minilm (ONNX Runtime) could not embed the texts: {exc}") from exc
    return vectors, tokens
