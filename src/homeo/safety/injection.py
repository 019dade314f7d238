"""The injection and jailbreak classifier as a guard: all-MiniLM-L6-v2
embeddings (frozen, in process) read by the trained head in model/.

The encoder reads at most 256 tokens, so a longer text is read in windows of
WINDOW_WORDS words that overlap by a quarter; the text's score is its
highest window's, and the windows at or above the threshold are the spans.
An injection hidden at the end of a long page is read like one at the start.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from homeo.safety.head import Head, HeadError
from homeo.safety.verdict import Span, Verdict

MODEL_DIR = Path(__file__).parent / "model"
WINDOW_WORDS = 128
STRIDE_WORDS = 96
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class Window:
    start: int
    end: int


def windows(text: str) -> list[Window]:
    """Character ranges of the text's windows: one for a text of up to
    WINDOW_WORDS + STRIDE_WORDS / 2 words, overlapping ones beyond."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if len(words) <= WINDOW_WORDS + STRIDE_WORDS // 2:
        return [Window(0, len(text))]
    found = []
    for first in range(0, len(words), STRIDE_WORDS):
        last = min(first + WINDOW_WORDS, len(words)) - 1
        found.append(Window(words[first][0], words[last][1]))
        if last == len(words) - 1:
            break
    return found


def load_card(folder: Path = MODEL_DIR) -> dict[str, Any]:
    path = folder / "injection-card.json"
    if not path.is_file():
        raise HeadError(f"no classifier card at {path}: run `homeo safety train`")
    return json.loads(path.read_text())


class InjectionGuard:
    """Flags prompt injections and jailbreaks: text that tries to make the model
    drop its instructions, reveal them, or act for someone other than its user."""

    name = "injection"

    def __init__(self, folder: Path = MODEL_DIR, threshold: float | None = None,
                 encoder: Any = None) -> None:
        self.card = load_card(folder)
        self.head = Head.load(folder / "injection-head.npz")
        self.threshold = float(self.card["threshold"] if threshold is None else threshold)
        self._encoder = encoder

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from homeo.llm.providers.minilm import shared_encoder

            self._encoder = shared_encoder()
        return self._encoder

    def scores(self, texts: list[str]) -> np.ndarray:
        """P(injection) of each whole text, as the head was trained (no windows)."""
        vectors = self.encoder.encode(texts, batch_size=64, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)
        return self.head.scores(vectors)

    def check(self, text: str) -> Verdict:
        if not text.strip():
            return Verdict(self.name, "clean", False, 0.0, self.threshold, "the text is empty")
        parts = windows(text)
        scores = self.scores([text[w.start:w.end] for w in parts])
        best = float(scores.max())
        spans = tuple(Span(w.start, w.end, "INJECTION", round(float(s), 4))
                      for w, s in zip(parts, scores, strict=True) if s >= self.threshold)
        if not spans:
            return Verdict(self.name, "clean", False, round(best, 4), self.threshold,
                           f"reads as ordinary text (score {best:.2f} < {self.threshold:.2f})")
        where = "the text" if len(parts) == 1 else f"{len(spans)} of {len(parts)} windows"
        return Verdict(self.name, "injection", True, round(best, 4), self.threshold,
                       f"reads as a prompt injection or jailbreak (score {best:.2f} >="
                       f" {self.threshold:.2f} in {where})", spans)
