"""What a guard says about a text, and the one method every guard has."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Span:
    """Characters `text[start:end]` that made a guard flag the text, and what they are."""

    start: int
    end: int
    kind: str  # e.g. "INJECTION", "EMAIL_ADDRESS", "GITHUB_TOKEN"
    score: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """`flagged` is True when `score` reached the guard's threshold. `label` names
    what was found ("injection", "secret", "pii") or "clean"; `reason` says why
    in one line a person can act on."""

    guard: str
    label: str
    flagged: bool
    score: float
    threshold: float
    reason: str
    spans: tuple[Span, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["spans"] = [asdict(span) for span in self.spans]
        return data


def drop_overlaps(spans: list[Span]) -> list[Span]:
    """Keep the higher-scoring (then longer) of overlapping spans, in text order."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (-s.score, -(s.end - s.start), s.start)):
        if all(span.end <= other.start or span.start >= other.end for other in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


class Guard(Protocol):
    """Reads one text and says what it found. `check` is synchronous and may
    take milliseconds of CPU: async callers run it in a thread."""

    name: str

    def check(self, text: str) -> Verdict: ...
