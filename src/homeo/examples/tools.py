"""Tools used by the example agents."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field

from homeo.tools.arithmetic import evaluate
from homeo.tools.registry import tool

# At least one operator between two operands: the local model's grammar then
# cannot close the string after the first number ("12" for "12 * 12"), which
# a 135M model otherwise does now and then.
EXPRESSION = r"^[-( ]*[0-9][0-9.]*[) ]*[-+*/%][-+*/%(). 0-9]{0,200}[0-9)]$"


@tool(idempotent=True, timeout_seconds=5)
def calculate(expression: Annotated[str, Field(pattern=EXPRESSION)]) -> int | float:
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
