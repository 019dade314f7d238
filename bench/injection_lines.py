"""Would reading a tool output line by line catch the injections planted in it?

The shipped classifier reads a tool output whole (up to 128-word windows), and
the rest of the page dilutes a planted injection: recall 0.24 on the held-back
injected tool outputs. This scores each line (or sentence) of the generated
agent texts of the validation and test splits on its own, takes the highest,
and prints recall on the injected outputs and false positives on the benign
ones at several thresholds, beside the whole-text reading in the same run.
None of these texts trained the head.

    .venv/bin/python bench/injection_lines.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
from _common import machine, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from homeo.safety import train  # noqa: E402
from homeo.safety.injection import InjectionGuard  # noqa: E402

THRESHOLDS = (0.9584, 0.99, 0.995, 0.998)
_PIECE = re.compile(r"\n+|(?<=[.!?])\s+(?=[A-Z])")


def pieces(text: str) -> list[str]:
    found = [p.strip() for p in _PIECE.split(text) if len(p.strip().split()) >= 3]
    return found or [text]


def main() -> None:
    guard = InjectionGuard()
    rows = []
    for split in ("validation", "test"):
        data = train.build_split(split, guard.card["seed"])
        keep = [i for i, s in enumerate(data.sources) if s in ("agent:tool", "agent:injected")]
        texts = [data.texts[i] for i in keep]
        injected = np.asarray([data.sources[i] == "agent:injected" for i in keep])
        whole = guard.scores(texts)
        owners, parts = [], []
        for index, text in enumerate(texts):
            for piece in pieces(text):
                owners.append(index)
                parts.append(piece)
        lines = np.zeros(len(texts))
        np.maximum.at(lines, np.asarray(owners), guard.scores(parts))
        for name, scores in (("whole", whole), ("lines", lines)):
            for threshold in THRESHOLDS:
                flagged = scores >= threshold
                rows.append([split, name, threshold, f"{flagged[injected].mean():.3f}",
                             f"{flagged[~injected].mean():.3f}"])
    print(machine())
    print(table(["split", "reading", "threshold", "recall (injected)",
                 "FPR (benign tool outputs)"], rows))


if __name__ == "__main__":
    main()
