"""Tools used by the example agents."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field

from homeo.tools.arithmetic import ARITHMETIC, evaluate
from homeo.tools.registry import tool


@tool(idempotent=True, timeout_seconds=5)
def calculate(expression: Annotated[str, Field(pattern=ARITHMETIC)]) -> int | float:
    """Evaluate an arithmetic expression with + - * / // % ** and parentheses.

    Args:
        expression: the arithmetic to do, for example "(2 + 3) * 4"
    """
    return evaluate(expression)


@tool(idempotent=True, timeout_seconds=5)
def utc_now() -> str:
    """The current date and time in UTC, ISO 8601."""
    return datetime.now(tz=UTC).isoformat(timespec="seconds")


@tool(idempotent=True, timeout_seconds=5)
def word_count(text: str) -> int:
    """Count the words in a text.

    Args:
        text: the text whose words to count
    """
    return len(text.split())
