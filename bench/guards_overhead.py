"""What the safety guards add at each boundary of a run, guards on vs off.

For each boundary, one text of the kind that crosses it (a user's task, a
fetched web page, a model's answer) is screened one at a time under the
policy in POLICY, as a run's nodes do (`Screen.check`, in a thread), and
timed: P50 and P99 per check. The baseline, in the same run, is the same call
with the guards off (a policy with no rules at the boundary), which is what
every run paid before the guards were wired. The goal is under 20 ms per
guarded text on CPU.

    .venv/bin/python bench/guards_overhead.py
    .venv/bin/python bench/guards_overhead.py --texts 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from _common import machine, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from homeo.safety import agent_texts, corpus  # noqa: E402
from homeo.safety.policy import SafetyPolicy  # noqa: E402
from homeo.safety.screen import Screen, SafetyGuards  # noqa: E402

POLICY = {
    "input": {"injection": "flag", "secrets": "block"},
    "tool_output": {"injection": "block", "secrets": "redact"},
    "output": {"pii": "redact", "secrets": "redact"},
}


def texts(count: int) -> dict[str, list[str]]:
    slabs = corpus.load("s-labs", "test")
    generated = agent_texts.generate(
        "test", 0, [t for t, label in zip(slabs.texts, slabs.labels, strict=True) if label])
    tools = generated.sets["tool"] + generated.sets["injected"]
    return {"input": generated.sets["task"][:count], "tool_output": tools[::2][:count],
            "output": [f"Done. I wrote to {t[:200]}" for t in generated.sets["task"][:count]]}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def timed(screen: Screen, boundary: str, items: list[str]) -> list[float]:
    seconds = []
    for text in items:
        started = time.perf_counter()
        await screen.check(boundary, text)  # type: ignore[arg-type]
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=100)
    args = parser.parse_args()
    guards = SafetyGuards()
    on = Screen(SafetyPolicy.model_validate(POLICY), guards)
    off = Screen(SafetyPolicy(), guards)
    samples = texts(args.texts)
    for boundary in samples:  # load every guard's model before timing
        asyncio.run(timed(on, boundary, samples[boundary][:2]))
    rows = []
    for boundary, items in samples.items():
        guarded = asyncio.run(timed(on, boundary, items))
        bare = asyncio.run(timed(off, boundary, items))
        rules = ", ".join(f"{k} {v}" for k, v in POLICY[boundary].items())
        words = statistics.median(len(t.split()) for t in items)
        rows.append([boundary, rules, f"{len(items)} (median {words:.0f} words)",
                     f"{statistics.median(bare) * 1000:.2f}",
                     f"{statistics.median(guarded) * 1000:.1f}",
                     f"{percentile(guarded, 0.99) * 1000:.1f}",
                     "yes" if statistics.median(guarded) < 0.020 else "no"])
    print(machine())
    print(table(["boundary", "rules", "texts", "off P50 ms", "on P50 ms", "on P99 ms",
                 "P50 < 20 ms"], rows))


if __name__ == "__main__":
    main()
