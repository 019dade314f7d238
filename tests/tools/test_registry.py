"""Tools from functions: schemas from hints and docstrings, validation, loading."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import Field

from homeo.tools.registry import ToolError, from_function, load_tool, tool


@tool(name="search_docs", idempotent=True, timeout_seconds=3)
def search(query: Annotated[str, Field(max_length=50)], limit: int = 5,
           mode: Literal["fast", "exact"] = "fast") -> list[str]:
    """Search the documents.

    Longer explanation here.

    Args:
        query: what to look for
        limit: how many results
    """
    return [query] * limit


def test_schema_comes_from_hints_and_docstring() -> None:
    built = from_function(search)
    assert built.name == "search_docs" and built.idempotent and built.timeout_seconds == 3
    assert built.description == "Search the documents. Longer explanation here."
    assert built.parameters == {
        "type": "object",
        "additionalProperties": False,
        "required": ["query"],
        "properties": {
            "query": {"type": "string", "maxLength": 50, "description": "what to look for"},
            "limit": {"type": "integer", "default": 5, "description": "how many results"},
            "mode": {"type": "string", "enum": ["fast", "exact"], "default": "fast"},
        },
    }
    assert built.spec.name == "search_docs"


def test_validation_names_every_problem() -> None:
    built = from_function(search)
    assert built.validate({"query": "x"}) == {"query": "x", "limit": 5, "mode": "fast"}
    with pytest.raises(ToolError) as caught:
        built.validate({"query": "x" * 60, "limit": "many", "extra": 1})
    message = str(caught.value)
    assert message.startswith("invalid arguments for tool 'search_docs': ")
    assert "query: String should have at most 50 characters" in message
    assert "limit: Input should be a valid integer" in message
    assert "extra: Extra inputs are not permitted" in message


def test_plain_functions_default_to_not_idempotent() -> None:
    def note(text: str) -> None:
        """Write a note."""

    built = from_function(note)
    assert not built.idempotent and built.name == "note"


def test_untyped_arguments_are_refused() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(ToolError, match="argument 'x' needs a type hint"):
        from_function(untyped)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_colon", "must look like 'package.module:function'"),
        ("homeo.nope:thing", "cannot import 'homeo.nope'"),
        ("homeo.examples.tools:missing", "has no function 'missing'"),
    ],
)
def test_load_tool_errors_say_what_to_fix(reference: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        load_tool(reference)


def test_example_calculator_is_safe_and_exact() -> None:
    calculate = load_tool("homeo.examples.tools:calculate")
    assert calculate.function(expression="(2 + 3) * 4 - 2 ** 3") == 12
    with pytest.raises(ValueError, match="unsupported"):
        calculate.function(expression="__import__('os')")
    with pytest.raises(ValueError, match="too large"):
        calculate.function(expression="9 ** 99999")
    with pytest.raises(ToolError, match="should match pattern"):
        calculate.validate({"expression": "two plus two"})
