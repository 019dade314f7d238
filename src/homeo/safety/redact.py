"""Replace what the guards found with typed labels: `<EMAIL_ADDRESS>`,
`<GITHUB_TOKEN>`, ... The labels name the kind, never the value, so a
redacted text can be shown, logged or sent to a model."""

from __future__ import annotations

from collections.abc import Iterable

from homeo.safety.verdict import Span, drop_overlaps


def redact(text: str, spans: Iterable[Span]) -> str:
    """`text` with each span replaced by `<KIND>`; of overlapping spans the
    higher-scoring (then longer) one is replaced."""
    pieces = []
    at = 0
    for span in drop_overlaps(list(spans)):
        pieces.append(text[at:span.start])
        pieces.append(f"<{span.kind}>")
        at = span.end
    pieces.append(text[at:])
    return "".join(pieces)
