"""Turn a Python function into a `Tool`: name, description, JSON schema, flags.

The schema comes from the function's type hints (through pydantic) and the
argument descriptions from its docstring, so a tool is written once:

    @tool(idempotent=True)
    def add(a: float, b: float) -> float:
        \"\"\"Add two numbers.

        Args:
            a: the first number
            b: the second number
        \"\"\"
        return a + b
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from homeo.llm.base import ToolSpec
from homeo.ratelimit import RateLimit, parse_rate_limit
from homeo.tools.context import ToolContext

if TYPE_CHECKING:
    from homeo.config import McpServer


class ToolError(Exception):
    """A tool could not be loaded, was called wrongly, or failed."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    function: Callable[..., Any]
    # The pydantic model of a Python tool's arguments; None for a tool known
    # only by its JSON schema (from an MCP server), checked with jsonschema.
    arguments: type[BaseModel] | None
    idempotent: bool = False
    timeout_seconds: float = 60.0
    parameters: dict[str, Any] = field(default_factory=dict)
    rate_limit: RateLimit | None = None
    # Where the tool came from (`package.module:function`); tool policies
    # match either this or the name.
    source: str = ""
    # A person approves each call before it runs (the run waits meanwhile).
    requires_approval: bool = False
    # Its results are stored documents or memory: the safety policy's
    # `retrieved` rules guard them instead of `tool_output`'s.
    retrieves: bool = False
    # The parameter that receives the call's ToolContext, if the tool takes one.
    context_parameter: str | None = None

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check the model's arguments against the schema; ToolError says what is wrong."""
        if self.arguments is None:
            return self._validate_schema(arguments)
        try:
            parsed = self.arguments.model_validate(arguments)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in error.errors()
            )
            raise ToolError(f"invalid arguments for tool {self.name!r}: {problems}") from None
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    def _validate_schema(self, arguments: dict[str, Any]) -> dict[str, Any]:
        import jsonschema

        validator = jsonschema.Draft202012Validator(self.parameters)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error.absolute_path) or 'arguments'}: {error.message}"
            for error in sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
        )
        if problems:
            raise ToolError(f"invalid arguments for tool {self.name!r}: {problems}")
        return arguments


def tool(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    idempotent: bool = False,
    timeout_seconds: float = 60.0,
    rate_limit: str | None = None,
    requires_approval: bool = False,
    retrieves: bool = False,
) -> Any:
    """Mark a function as a tool and set its flags. Usable bare or with arguments.

    `idempotent=True` promises that running the tool twice with the same
    arguments is harmless; only such tools are retried when a crash leaves
    their outcome unknown. `rate_limit="10/minute"` caps calls per tenant
    (`N/second`, `N/minute` or `N/hour`). `requires_approval=True` makes every
    call wait for a person to approve it (an agent's YAML can ask the same).
    `retrieves=True` says its results are stored documents or memory, which
    the safety policy's `retrieved` rules guard."""
    limit = parse_rate_limit(rate_limit) if rate_limit is not None else None

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__homeo_tool__ = {  # type: ignore[attr-defined]
            "name": name or fn.__name__,
            "idempotent": idempotent,
            "timeout_seconds": timeout_seconds,
            "rate_limit": limit,
            "requires_approval": requires_approval,
            "retrieves": retrieves,
        }
        return fn

    return mark(function) if function is not None else mark


def from_function(function: Callable[..., Any]) -> Tool:
    """Build a Tool from a (possibly `@tool`-marked) function."""
    flags = getattr(function, "__homeo_tool__", {})
    docs = docstring_parser.parse(inspect.getdoc(function) or "")
    described = {param.arg_name: param.description or "" for param in docs.params}
    fields: dict[str, Any] = {}
    context_parameter: str | None = None
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except NameError as error:
        raise ToolError(f"tool {function.__name__}: cannot resolve a type hint: {error}") from None
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ToolError(f"tool {function.__name__}: *args/**kwargs cannot have a schema")
        if hints.get(parameter.name) is ToolContext:
            context_parameter = parameter.name  # filled by the engine, not the model
            continue
        if parameter.name not in hints:
            raise ToolError(
                f"tool {function.__name__}: argument {parameter.name!r} needs a type hint"
            )
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (
            hints[parameter.name],
            Field(default, description=described.get(parameter.name) or None),
        )
    tool_name = flags.get("name", function.__name__)
    arguments = create_model(  # type: ignore[call-overload]
        f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    schema = arguments.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    description = " ".join(
        part for part in (docs.short_description, docs.long_description) if part
    )
    return Tool(
        name=tool_name,
        description=description,
        function=function,
        arguments=arguments,
        idempotent=flags.get("idempotent", False),
        timeout_seconds=flags.get("timeout_seconds", 60.0),
        parameters=schema,
        rate_limit=flags.get("rate_limit"),
        source=f"{function.__module__}:{function.__qualname__}",
        requires_approval=flags.get("requires_approval", False),
        retrieves=flags.get("retrieves", False),
        context_parameter=context_parameter,
    )


def load_tool(reference: str, mcp_servers: dict[str, McpServer] | None = None) -> Tool:
    """Load `package.module:function`, or `mcp:SERVER/TOOL` (a tool of one of
    `mcp_servers`, the configured MCP servers), as a Tool, with errors that say
    what to fix."""
    if reference.startswith("mcp:"):
        from homeo.mcp.tools import load_mcp_tool

        return load_mcp_tool(reference, mcp_servers or {})
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ToolError(f"tool reference {reference!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ToolError(f"tool {reference!r}: cannot import {module_name!r}: {error}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ToolError(f"tool {reference!r}: {module_name} has no function {attribute!r}")
    return replace(from_function(function), source=reference)
