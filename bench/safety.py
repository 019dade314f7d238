"""The safety guards: how well the injection classifier separates attacks from
ordinary text, and what each guard costs per text.

Quality, for each of the classifier's readings (input: its input head;
document: the head the tool_output and retrieved screens use): precision,
recall, F1 and false-positive rate on every test set (S-Labs, neuralchemy, the
generated agent texts and each of their parts, pieces of real documentation:
standard-library docstrings and installed packages' READMEs) at the head's
shipped threshold. None of these texts trained a head or chose its
threshold (documentation is split by module and by package). The baseline,
in the same run on the same texts, is a keyword list: a text is an attack
when it contains one of KEYWORDS, which is how guards that "match ignore
previous instructions" work.

Cost: each guard's `check` on one text at a time (P50, P99, texts per second)
over a sample of the test texts, and the classifier's batch throughput. The
goal is under 20 ms per guarded text on the CPU.

    .venv/bin/python bench/safety.py
    .venv/bin/python bench/safety.py --texts 500
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _common import machine, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from homeo.safety import train  # noqa: E402
from homeo.safety.credentials import SecretsGuard  # noqa: E402
from homeo.safety.injection import READINGS, InjectionGuard  # noqa: E402
from homeo.safety.pii import PiiGuard  # noqa: E402

KEYWORDS = (
    "ignore previous instructions", "ignore all previous", "ignore the above",
    "ignore your instructions", "disregard previous", "disregard all", "disregard your",
    "forget your instructions", "forget all previous", "system prompt", "jailbreak",
    "developer mode", "you are now", "pretend you are", "act as dan", "do anything now",
    "no restrictions", "without restrictions", "override your", "reveal your instructions",
    "new instructions",
)


def keyword_scores(texts: list[str]) -> np.ndarray:
    return np.asarray([float(any(k in text.lower() for k in KEYWORDS)) for text in texts])


def quality(guard: InjectionGuard, split: train.Split) -> None:
    started = time.perf_counter()
    scores = guard.text_scores(split.texts)  # as `check` reads them: the highest window
    seconds = time.perf_counter() - started
    ours = train.by_source(scores, split, guard.threshold)
    baseline = train.by_source(keyword_scores(split.texts), split, 0.5)
    rows = []
    for name in ours:
        mine, theirs = ours[name], baseline[name]
        # A set without attacks has a false-positive rate only.
        keys = ("precision", "recall", "f1", "fpr") if mine["positives"] else ("fpr",)
        rows.append([name, mine["n"], mine["positives"],
                     *(f"{mine[k]:.3f}" if k in keys else "-"
                       for k in ("precision", "recall", "f1", "fpr")),
                     *(f"{theirs[k]:.3f}" if k in keys else "-"
                       for k in ("precision", "recall", "f1", "fpr"))])
    print(f"\nInjection classifier, read as {guard.reading} ({guard.card['head']} head on"
          f" all-MiniLM-L6-v2, threshold {guard.threshold}) vs the keyword list, on the test"
          " splits:")
    print(table(["test set", "texts", "attacks", "P", "R", "F1", "FPR",
                 "kw P", "kw R", "kw F1", "kw FPR"], rows))
    print(f"(scored {len(split.texts)} texts in batches in {seconds:.1f}s:"
          f" {len(split.texts) / seconds:.0f} texts/s)")


def latency(guards: dict[str, object], texts: list[str]) -> None:
    rows = []
    per_text: dict[str, list[float]] = {name: [] for name in [*guards, "all three"]}
    for name, guard in guards.items():
        guard.check(texts[0])  # load its model outside the timing
    for text in texts:
        total = 0.0
        for name, guard in guards.items():
            started = time.perf_counter()
            guard.check(text)
            took = time.perf_counter() - started
            per_text[name].append(took)
            total += took
        per_text["all three"].append(total)
    for name, times in per_text.items():
        ms = sorted(t * 1000 for t in times)
        p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
        rows.append([name, len(ms), f"{statistics.median(ms):.1f}", f"{p99:.1f}",
                     f"{len(ms) / (sum(ms) / 1000):.0f}"])
    words = statistics.median(len(text.split()) for text in texts)
    print(f"\nPer text, one at a time ({len(texts)} test texts, median {words:.0f} words):")
    print(table(["guard", "texts", "P50 ms", "P99 ms", "texts/s"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=300, help="texts timed one at a time")
    parser.add_argument("--seed", type=int, default=0, help="which test texts are timed")
    args = parser.parse_args()
    print(machine())
    injection = InjectionGuard()
    split = train.build_split("test", injection.card["seed"])
    for reading in READINGS:
        quality(InjectionGuard(reading=reading, encoder=injection.encoder), split)
    sample = random.Random(args.seed).sample(split.texts, min(args.texts, len(split.texts)))
    latency({"injection": injection, "secrets": SecretsGuard(), "pii": PiiGuard()}, sample)


if __name__ == "__main__":
    main()
