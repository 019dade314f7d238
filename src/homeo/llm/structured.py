"""Structured output: an answer that must be JSON matching a schema.

The schema goes to the model (`Model.request(json_schema=...)`): the local
model turns it into a grammar, an OpenAI-compatible endpoint gets it as
`response_format`. Not every model honours it, so the answer is checked here;
one that fails is sent back once with the validation error for the model to
repair, then the call fails with `StructuredOutputError`.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from homeo.llm.base import (
    Message,
    Model,
    ModelError,
    ModelResponse,
    ToolChoice,
    ToolSpec,
    options_given,
)


class StructuredOutputError(ModelError):
    """The model's answer did not match the schema, even after one repair attempt."""


class InvalidSchema(ModelError):
    """The schema given is not a valid JSON schema."""


def check_schema(schema: dict[str, Any]) -> Draft202012Validator:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise InvalidSchema(f"the JSON schema is invalid: {error.message}") from None
    return Draft202012Validator(schema)


def problem_with(content: str, validator: Draft202012Validator) -> str | None:
    """Why `content` does not match the schema, or None when it does."""
    try:
        data = json.loads(content)
    except json.JSONDecodeError as error:
        return f"the answer is not valid JSON ({error.msg} at character {error.pos})"
    error = next(iter(sorted(validator.iter_errors(data), key=lambda e: list(e.path))), None)
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
    validator = check_schema(json_schema)
    extra = options_given(tool_choice=tool_choice, stop=stop)
    response = await model.request(
        messages, tools, max_tokens=max_tokens, temperature=temperature, json_schema=json_schema,
        **extra,
    )
    if response.message.tool_calls:
        return response
    problem = problem_with(response.message.content, validator)
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
    still = problem_with(second.message.content, validator)
    if still is None:
        return second
    raise StructuredOutputError(
        f"model {model.name!r} did not answer with JSON matching the schema, even after a"
        f" repair attempt: {still}; answer was {second.message.content[:200]!r}"
    )
