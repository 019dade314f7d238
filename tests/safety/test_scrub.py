"""The scrubber: configured values, homeo keys, bearer tokens and what the
secrets guard recognises are replaced; ordinary text is left as it was."""

from __future__ import annotations

import jwt
import pytest

from homeo.safety.scrub import Scrubber

KEY = "hk_0123456789abcdef_" + "Ab3_-" * 8
TOKEN = jwt.encode({"sub": "alice", "tenant": "acme"}, "s" * 32, algorithm="HS256")


@pytest.mark.parametrize("text,scrubbed", [
    (f"refused {KEY} from 10.0.0.1", "refused hk_0123456789abcdef_*** from 10.0.0.1"),
    ("authorization: Bearer abc.def-ghi_jkl", "authorization: Bearer ***"),
    (f"token={TOKEN}", "token=<JWT>"),
    ("cannot connect to postgresql://homeo:s3cretPw9@db:5432/homeo",
     "cannot connect to postgresql://homeo:<PASSWORD>@db:5432/homeo"),
    ("Incorrect API key provided: sk-proj-" + "a1B2" * 10,
     "Incorrect API key provided: <OPENAI_API_KEY>"),
    ("run run_01a236b53a0162209ef505 failed: 2 + 2 = 5", "run run_01a236b53a0162209ef505"
     " failed: 2 + 2 = 5"),
    ("unknown API key hk_0123456789abcdef_…", "unknown API key hk_0123456789abcdef_…"),
])
def test_known_formats_are_replaced_and_plain_text_is_kept(text: str, scrubbed: str) -> None:
    assert Scrubber().text(text) == scrubbed


def test_configured_values_are_hidden_wherever_they_appear() -> None:
    scrubber = Scrubber(["correct-horse-battery", "abc", ""])  # too short: ignored
    assert scrubber.text("pw=correct-horse-battery;x=correct-horse-battery") == "pw=***;x=***"
    assert scrubber.text("abc stays") == "abc stays"
    scrubber.keep(["staple-staple"])
    assert scrubber.text("staple-staple and correct-horse-battery") == "*** and ***"


def test_values_are_scrubbed_inside_json_like_structures() -> None:
    scrubber = Scrubber(["hunter2-hunter2"])
    value = {"result": ["hunter2-hunter2", 3, None], "nested": {"k": (f"Bearer {KEY}",)}}
    assert scrubber.value(value) == {"result": ["***", 3, None], "nested": {"k": ("Bearer ***",)}}
