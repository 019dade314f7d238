"""Reversible redaction (homeo.safety.vault) and the rules that may use it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from homeo.safety.policy import SafetyPolicy
from homeo.safety.vault import mask, remask, unmask, unmask_value
from homeo.safety.verdict import Span

TEXT = "Mail bob@example.com and carol@example.com, then bob@example.com again"


def spans_of(text: str, value: str, kind: str = "EMAIL_ADDRESS") -> list[Span]:
    found, at = [], text.find(value)
    while at >= 0:
        found.append(Span(at, at + len(value), kind, 0.9))
        at = text.find(value, at + 1)
    return found


def test_each_value_gets_one_numbered_placeholder_and_comes_back() -> None:
    spans = spans_of(TEXT, "bob@example.com") + spans_of(TEXT, "carol@example.com")
    masked, vault = mask(TEXT, [], {}, reversible=spans)
    assert masked == ("Mail <EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>, then"
                      " <EMAIL_ADDRESS_1> again")
    assert vault == {"<EMAIL_ADDRESS_1>": "bob@example.com",
                     "<EMAIL_ADDRESS_2>": "carol@example.com"}
    assert unmask(masked, vault) == TEXT


def test_a_later_text_extends_the_vault_and_reuses_known_values() -> None:
    vault = {"<EMAIL_ADDRESS_1>": "bob@example.com"}
    text = "carol@example.com wrote to bob@example.com"
    spans = spans_of(text, "carol@example.com") + spans_of(text, "bob@example.com")
    masked, after = mask(text, [], vault, reversible=spans)
    assert masked == "<EMAIL_ADDRESS_2> wrote to <EMAIL_ADDRESS_1>"
    assert after == {**vault, "<EMAIL_ADDRESS_2>": "carol@example.com"}
    assert vault == {"<EMAIL_ADDRESS_1>": "bob@example.com"}  # the caller's map is untouched


def test_irreversible_spans_get_the_bare_label_and_never_enter_the_vault() -> None:
    text = "call +351 912 345 678 or mail bob@example.com"
    phone = spans_of(text, "+351 912 345 678", "PHONE_NUMBER")
    masked, vault = mask(text, phone, {}, reversible=spans_of(text, "bob@example.com"))
    assert masked == "call <PHONE_NUMBER> or mail <EMAIL_ADDRESS_1>"
    assert vault == {"<EMAIL_ADDRESS_1>": "bob@example.com"}


def test_unknown_placeholders_stay_and_values_are_masked_again() -> None:
    vault = {"<EMAIL_ADDRESS_1>": "bob@example.com"}
    assert unmask("to <EMAIL_ADDRESS_2> and <EMAIL_ADDRESS_1>", vault) == (
        "to <EMAIL_ADDRESS_2> and bob@example.com")
    assert unmask("to <EMAIL_ADDRESS_1>", {}) == "to <EMAIL_ADDRESS_1>"
    assert unmask_value({"to": ["<EMAIL_ADDRESS_1>"], "n": 3}, vault) == {
        "to": ["bob@example.com"], "n": 3}
    assert remask("sent to bob@example.com", vault) == "sent to <EMAIL_ADDRESS_1>"


@pytest.mark.parametrize("rules, says", [
    ({"input": {"secrets": {"action": "redact", "reversible": True}}}, "pii only"),
    ({"input": {"pii": {"action": "flag", "reversible": True}}}, "redact of pii only"),
])
def test_reversible_is_refused_where_it_cannot_work(rules, says) -> None:
    with pytest.raises(ValidationError, match=says):
        SafetyPolicy.model_validate(rules)


def test_a_policy_says_whether_it_restores_values() -> None:
    assert SafetyPolicy.model_validate(
        {"tool_output": {"pii": {"action": "redact", "reversible": True}}}).reversible
    assert not SafetyPolicy.model_validate({"input": {"pii": "redact"}}).reversible
