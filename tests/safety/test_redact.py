"""Redaction puts a typed placeholder where each span was."""

from __future__ import annotations

from homeo.safety.credentials import SecretsGuard
from homeo.safety.redact import redact
from homeo.safety.verdict import Span


def test_spans_become_typed_placeholders() -> None:
    text = "mail bob@example.com or call 555-0100"
    spans = [Span(5, 20, "EMAIL_ADDRESS", 1.0), Span(29, 37, "PHONE_NUMBER", 0.4)]
    assert redact(text, spans) == "mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>"


def test_of_overlapping_spans_the_stronger_one_is_replaced() -> None:
    text = "postgresql://app:pw12345678@db/x"
    spans = [Span(0, len(text), "URL", 0.5), Span(17, 27, "PASSWORD", 0.9)]
    assert redact(text, spans) == "postgresql://app:<PASSWORD>@db/x"


def test_no_spans_leaves_the_text_alone() -> None:
    assert redact("nothing here", []) == "nothing here"


def test_a_found_secret_is_redacted_and_the_rest_kept() -> None:
    text = "AWS key AKIAIOSFODNN7EXAMPLE in the log"
    verdict = SecretsGuard().check(text)
    assert redact(text, verdict.spans) == "AWS key <AWS_ACCESS_KEY_ID> in the log"
