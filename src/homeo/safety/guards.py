"""The guards together: build them by name, run them all on a text, and
redact what the secrets and PII guards found.

Building is cheap; each guard loads its model on its first check (the
encoder, the spaCy pipeline), once per process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeo.safety.redact import redact
from homeo.safety.verdict import Guard, Verdict

GUARD_NAMES = ("injection", "secrets", "pii")
REDACTED_BY = ("secrets", "pii")  # an injection's span is a window, not a value to hide


class GuardUnavailable(Exception):
    """A guard cannot be built or run here; the message says what to install or run."""


def build(names: Sequence[str] = GUARD_NAMES, reading: str = "input") -> list[Guard]:
    """The guards of these names; the injection classifier reads texts as
    `reading` ("input": a user's or a model's text; "document": a tool's output
    or a retrieved document)."""
    unknown = [name for name in names if name not in GUARD_NAMES]
    if unknown:
        raise GuardUnavailable(f"unknown guard {unknown[0]!r}: choose from "
                               f"{', '.join(GUARD_NAMES)}")
    guards: list[Guard] = []
    for name in names:
        if name == "injection":
            from homeo.safety.head import HeadError
            from homeo.safety.injection import InjectionGuard

            try:
                guards.append(InjectionGuard(reading=reading))  # type: ignore[arg-type]
            except HeadError as error:
                raise GuardUnavailable(str(error)) from None
        elif name == "secrets":
            from homeo.safety.credentials import SecretsGuard

            guards.append(SecretsGuard())
        else:
            from homeo.safety.pii import PiiGuard

            guards.append(PiiGuard())
    return guards


@dataclass(frozen=True, slots=True)
class Checked:
    """Every guard's verdict on one text, and the text with secrets and PII redacted."""

    verdicts: list[Verdict]
    redacted: str

    @property
    def flagged(self) -> bool:
        return any(verdict.flagged for verdict in self.verdicts)

    def to_json(self) -> dict[str, Any]:
        return {"flagged": self.flagged, "verdicts": [v.to_json() for v in self.verdicts],
                "redacted": self.redacted}


def check(guards: Sequence[Guard], text: str) -> Checked:
    """Run every guard on `text`. GuardUnavailable if one cannot load its model."""
    from homeo.llm.base import ModelError
    from homeo.safety.pii import PiiUnavailable

    verdicts = []
    for guard in guards:
        try:
            verdicts.append(guard.check(text))
        except (ModelError, PiiUnavailable) as error:
            raise GuardUnavailable(f"guard {guard.name}: {error}") from None
    spans = [span for verdict in verdicts if verdict.guard in REDACTED_BY
             for span in verdict.spans]
    return Checked(verdicts, redact(text, spans))
