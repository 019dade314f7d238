"""The injection and jailbreak classifier as a guard: all-MiniLM-L6-v2
embeddings (frozen, in process) read by a trained head in model/.

There are two heads, one per reading (train.py): `input` for what a user or a
model writes, `document` for a tool's output or a retrieved document, which
learned that documentation's imperatives ("run", "never", "override") are
not addressed to the agent. The screens pick the document reading at the
tool_output and retrieved boundaries.

The encoder reads at most 256 tokens, so a longer text is read in windows
that overlap by a quarter (each head's card says how many words: 128 for
input, 48 for documents, so a line planted in a page is not drowned by the
page around it); the text's score is its highest window's, and the windows at
or above the threshold are the spans. An injection hidden at the end of a long
page is read like one at the start. Training reads the same windows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from homeo.safety.head import Head, HeadError
from homeo.safety.verdict import Span, Verdict

MODEL_DIR = Path(__file__).parent / "model"
Reading = Literal["input", "document"]
READINGS: tuple[Reading, ...] = ("input", "document")
PREFIXES: dict[str, str] = {"input": "injection", "document": "injection-document"}
WINDOW_WORDS = 128
STRIDE_WORDS = 96
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class Window:
    start: int
    end: int


def windows(text: str, size: int = WINDOW_WORDS, stride: int = STRIDE_WORDS) -> list[Window]:
    """Character ranges of the text's windows: one for a text of up to
    size + stride / 2 words, overlapping ones beyond."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if len(words) <= size + stride // 2:
        return [Window(0, len(text))]
    found = []
    for first in range(0, len(words), stride):
        last = min(first + size, len(words)) - 1
        found.append(Window(words[first][0], words[last][1]))
        if last == len(words) - 1:
            break
    return found


def highest(scores: np.ndarray, owners: Sequence[int], count: int) -> np.ndarray:
    """Each of `count` texts' highest window score (`owners`: each window's text)."""
    found = np.zeros(count, dtype=np.float64)
    np.maximum.at(found, np.asarray(owners, dtype=np.int64), scores)
    return found


def load_card(folder: Path = MODEL_DIR, reading: Reading = "input") -> dict[str, Any]:
    path = folder / f"{PREFIXES[reading]}-card.json"
    if not path.is_file():
        raise HeadError(f"no classifier card at {path}: run `homeo safety train`")
    return json.loads(path.read_text())


class InjectionGuard:
    """Flags prompt injections and jailbreaks: text that tries to make the model
    drop its instructions, reveal them, or act for someone other than its user."""

    name = "injection"

    def __init__(self, folder: Path = MODEL_DIR, threshold: float | None = None,
                 encoder: Any = None, reading: Reading = "input") -> None:
        if reading not in PREFIXES:
            raise HeadError(f"unknown reading {reading!r}: choose from {', '.join(READINGS)}")
        self.reading = reading
        self.card = load_card(folder, reading)
        self.head = Head.load(folder / f"{PREFIXES[reading]}-head.npz")
        self.threshold = float(self.card["threshold"] if threshold is None else threshold)
        self.window_words = int(self.card.get("window_words", WINDOW_WORDS))
        self.stride_words = int(self.card.get("stride_words", STRIDE_WORDS))
        self._encoder = encoder

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from homeo.llm.providers.minilm import shared_encoder

            self._encoder = shared_encoder()
        return self._encoder

    def scores(self, texts: list[str]) -> np.ndarray:
        """P(injection) of each text read whole (one window, however long)."""
        vectors = self.encoder.encode(texts, batch_size=64, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)
        return self.head.scores(vectors)

    def windows(self, text: str) -> list[Window]:
        return windows(text, self.window_words, self.stride_words)

    def text_scores(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's score as `check` reads it: its highest window's."""
        owners, parts = [], []
        for index, text in enumerate(texts):
            for window in self.windows(text):
                owners.append(index)
                parts.append(text[window.start:window.end])
        return highest(self.scores(parts), owners, len(texts)) if parts else np.zeros(0)

    def check(self, text: str) -> Verdict:
        if not text.strip():
            return Verdict(self.name, "clean", False, 0.0, self.threshold, "the text is empty")
        parts = self.windows(text)
        scores = self.scores([text[w.start:w.end] for w in parts])
        best = float(scores.max())
        spans = tuple(Span(w.start, w.end, "INJECTION", round(float(s), 4))
                      for w, s in zip(parts, scores, strict=True) if s >= self.threshold)
        if not spans:
            return Verdict(self.name, "clean", False, round(best, 4), self.threshold,
                           f"reads as ordinary text (score {best:.2f} < {self.threshold:.2f},"
                           f" read as {self.reading})")
        where = "the text" if len(parts) == 1 else f"{len(spans)} of {len(parts)} windows"
        return Verdict(self.name, "injection", True, round(best, 4), self.threshold,
                       f"reads as a prompt injection or jailbreak (score {best:.2f} >="
                       f" {self.threshold:.2f} in {where}, read as {self.reading})", spans)
