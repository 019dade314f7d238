"""PII planted in text is found by presidio with spaCy's en_core_web_sm, with
no network: presidio's e-mail check reads tldextract's bundled suffix list."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from homeo.safety.pii import PiiGuard

pytestmark = pytest.mark.slow  # loads spaCy's pipeline (a second or more)

PLANTED = (
    "Hi, I'm John Smith. Call me at +1 415-555-0132 or write to john.smith@gmail.com."
    " My card is 4111 1111 1111 1111, SSN 536-22-8726, and my laptop is at 203.0.113.7."
    " Pay to IBAN DE89 3704 0044 0532 0130 00."
)
EXPECTED = {
    ("PERSON", "John Smith"),
    ("PHONE_NUMBER", "+1 415-555-0132"),
    ("EMAIL_ADDRESS", "john.smith@gmail.com"),
    ("CREDIT_CARD", "4111 1111 1111 1111"),
    ("US_SSN", "536-22-8726"),
    ("IP_ADDRESS", "203.0.113.7"),
    ("IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
}


def test_planted_pii_is_found_with_its_kind_and_characters() -> None:
    verdict = PiiGuard().check(PLANTED)
    assert verdict.flagged and verdict.label == "pii"
    assert {(s.kind, PLANTED[s.start:s.end]) for s in verdict.spans} == EXPECTED


ORDINARY = [
    "Send an email to the team about the Q3 budget and book a room for Monday.",
    "Preheat the oven to 180C. Chop the onion and fry it gently for five minutes.",
    "Run `pip install sitegen` and then `sitegen init` in your project folder.",
    "INFO processed 1000 jobs; WARN retrying connection to postgres (attempt 2)",
    "usage: deployctl [-h] [--verbose] [--force] COMMAND ...",
    "Summarise the design review notes in five bullet points and list the open questions.",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_has_no_pii(text: str) -> None:
    verdict = PiiGuard().check(text)
    assert not verdict.flagged, verdict
    assert verdict.spans == ()


def test_pii_is_found_with_the_network_refused() -> None:
    """In a fresh process whose every connection attempt fails: loading the
    analyzer and checking an e-mail address work, and nothing tried to connect."""
    code = textwrap.dedent("""
        import socket
        tried = []
        def refuse(*args, **kwargs):
            tried.append(args)
            raise OSError("no network in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from homeo.safety.pii import PiiGuard
        verdict = PiiGuard().check("write to ana.lopez@example.co.uk today")
        print([s.kind for s in verdict.spans], len(tried))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=240, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['EMAIL_ADDRESS'] 0", done.stdout + done.stderr
