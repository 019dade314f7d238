"""Structured output: an answer that must be JSON matching a schema.

The schema goes to the model (`Model.request(json_schema=...)`): the local
model turns it into a grammar, an OpenAI-compatible endpoint gets it as
`response_format`. Not every model honours it, so the answer is checked here;
one that fails is sent back once with the validation error for the model to
repair, then the call fails with `StructuredOutputError`.

Schemas come from callers, so they are checked up front and validated with a
linear-time regex engine (homeo.llm.schema_guard); both run off the event
loop, as the checks are CPU work on the caller's data.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jsonschema.protocols import Validator

from homeo.llm.base import (
    Message,
    Model,
    ModelError,
    ModelResponse,
    ToolChoice,
    ToolSpec,
    options_given,
)
from homeo.llm.schema_guard import SchemaRefused, checked_validator, nesting_depth

# Deeper answers are refused before validation, which recurses per level.
MAX_ANSWER_DEPTH = 64


class StructuredOutputError(ModelError):
    """The model's answer did not match the schema, even after one repair attempt."""


class InvalidSchema(ModelError):
    """The schema given is not a valid JSON schema, or one homeo will not run."""


def check_schema(schema: dict[str, Any]) -> Validator:
    """The validator for a caller's schema; InvalidSchema says what is wrong with it."""
    try:
        return checked_validator(schema)
    except SchemaRefused as refused:
        raise InvalidSchema(str(refused)) from None


def problem_with(content: str, validator: Validator) -> str | None:
    """Why `content` does not match the schema, or None when it does."""
    try:
        data = json.loads(content)
    except json.JSONDecodeError as error:
        return f"the answer is not valid JSON ({error.msg} at character {error.pos})"
    except RecursionError:
        return f"the answer nests deeper than {MAX_ANSWER_DEPTH} levels"
    if nesting_depth(data, MAX_ANSWER_DEPTH) > MAX_ANSWER_DEPTH:
        return f"the answer nests deeper than {MAX_ANSWER_DEPTH} levels"
    try:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    except RecursionError:  # a recursive schema on a deep answer: a problem, not a crash
        return "the answer is nested too deeply to check against the schema"
    error = next(iter(errors), None)
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "the top level"
    return f"at {where}: {error.message}"


async def request_structured(
    model: Model,
    messages: list[Message],
    json_schema: dict[str, Any],
    tools: list[ToolSpec] | None = None,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    tool_choice: ToolChoice | None = None,
    stop: list[str] | None = None,
) -> ModelResponse:
    """`model.request` whose final answer (a reply without tool calls) must match
    `json_schema`. The usage returned covers the repair attempt too."""
    validator = await asyncio.to_thread(check_schema, json_schema)
    extra = options_given(tool_choice=tool_choice, stop=stop)
    response = await model.request(
        messages, tools, max_tokens=max_tokens, temperature=temperature, json_schema=json_schema,
        **extra,
    )
    if response.message.tool_calls:
        return response
    problem = await asyncio.to_thread(problem_with, response.message.content, validator)
    if problem is None:
        return response
    repair = [
        *messages,
        response.message,
        Message(
            role="user",
            content=f"Your answer does not match the required JSON schema: {problem}. Reply"
            " again with only the corrected JSON.",
        ),
    ]
    second = await model.request(
        repair, tools, max_tokens=max_tokens, temperature=temperature, json_schema=json_schema,
        **extra,
    )
    second = second.model_copy(update={"usage": response.usage + second.usage})
    if second.message.tool_calls:
        return second
    still = await asyncio.to_thread(problem_with, second.message.content, validator)
    if still is None:
        return second
    raise StructuredOutputError(
        f"model {model.name!r} did not answer with JSON matching the schema, even after a"
        f" repair attempt: {still}; answer was {second.message.content[:200]!r}"
    )
