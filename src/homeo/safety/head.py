"""The trained part of the injection classifier: a small network on top of the
frozen all-MiniLM-L6-v2 sentence embeddings, run with numpy alone.

A head is a list of dense layers, ReLU between them and a sigmoid at the end
(one layer: logistic regression). It is saved as a `.npz` of its weights and
read back the same way; nothing here trains (train.py does)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class HeadError(Exception):
    """The head file is missing or not a head; the message says what to do."""


@dataclass(frozen=True)
class Head:
    weights: tuple[np.ndarray, ...]  # (in, out) per layer
    biases: tuple[np.ndarray, ...]  # (out,) per layer

    def __post_init__(self) -> None:
        if not self.weights or len(self.weights) != len(self.biases):
            raise HeadError("a head needs one bias per weight matrix and at least one layer")
        if self.weights[-1].shape[1] != 1:
            raise HeadError("a head's last layer must have one output")

    @property
    def width(self) -> int:
        """The size of the embeddings the head reads."""
        return int(self.weights[0].shape[0])

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """P(injection) for each row of `embeddings` (n, width)."""
        hidden = np.asarray(embeddings, dtype=np.float32)
        for weight, bias in zip(self.weights[:-1], self.biases[:-1], strict=True):
            hidden = np.maximum(hidden @ weight + bias, 0.0)
        logits = (hidden @ self.weights[-1] + self.biases[-1])[:, 0]
        return np.exp(-np.logaddexp(0.0, -logits))  # the sigmoid, without overflow

    def save(self, path: Path) -> None:
        arrays = {}
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"w{index}"] = weight.astype(np.float32)
            arrays[f"b{index}"] = bias.astype(np.float32)
        with path.open("wb") as handle:  # np.savez adds .npz to a bare str path
            np.savez_compressed(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> Head:
        if not path.is_file():
            raise HeadError(f"no classifier head at {path}: run `homeo safety train`")
        with np.load(path) as arrays:
            layers = sum(1 for name in arrays.files if name.startswith("w"))
            try:
                weights = tuple(arrays[f"w{index}"] for index in range(layers))
                biases = tuple(arrays[f"b{index}"] for index in range(layers))
            except KeyError as missing:
                raise HeadError(f"{path} is not a classifier head ({missing} is missing):"
                                " run `homeo safety train`") from None
        return cls(weights, biases)
