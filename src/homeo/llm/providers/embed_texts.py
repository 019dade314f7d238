"""What the in-process embedders accept: a list of non-empty strings."""

from __future__ import annotations

from typing import Any

from homeo.llm.base import ModelError


def check_texts(texts: Any) -> list[str]:
    """`texts`, if it is a list of non-empty strings; ModelError naming the first bad one."""
    if isinstance(texts, str) or not isinstance(texts, list):
        raise ModelError(f"texts must be a list of strings, got {type(texts).__name__}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ModelError(f"text {index} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise ModelError(f"text {index} is empty: there is nothing to embed")
    return texts
