"""JSON schemas that callers send (`response_format`): checked before use, and
validated with a linear-time regex engine.

A caller's schema is code the server runs. Unchecked, `{"$ref": "#"}` or a
very deep schema ends in RecursionError, a remote `$ref` in an unresolvable
reference, and a `pattern` such as `^(a+)+$` makes Python's backtracking `re`
take exponential time on the answer, stalling a core. So `checked_validator`
refuses, with one line naming the problem and where:

- documents deeper than MAX_DEPTH levels or larger than MAX_NODES values;
- any reference that is not local (`#`, `#/json/pointer`, `#anchor`), and a
  nested `$id` (it would move the base of later references);
- references that loop without descending into the answer (`{"$ref": "#"}`,
  `allOf` back to itself), and chains of them longer than MAX_DEPTH;
- patterns RE2 cannot run (lookarounds, backreferences) or longer than
  MAX_PATTERN_CHARS; `unevaluatedProperties` with `patternProperties`
  (jsonschema matches those with `re` where no keyword can swap it).

The validator it returns is Draft 2020-12 with the keywords that match
patterns (`pattern`, `patternProperties`, `additionalProperties`) replaced,
through jsonschema's own `validators.extend`, by versions that use RE2, and
its format checker's `regex` format (which the metaschema applies to each
pattern) compiled by RE2 too.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

import re2
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator

MAX_DEPTH = 32
MAX_NODES = 10_000
MAX_PATTERN_CHARS = 1_000

# Keywords whose value is one subschema, a list of them, or a map of them.
_ONE = ("additionalProperties", "items", "contains", "not", "if", "then", "else",
        "propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema",
        "additionalItems")
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
# Applicators that validate the same instance: a loop through only these never ends.
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
_REFS = ("$ref", "$dynamicRef", "$recursiveRef")


class SchemaRefused(ValueError):
    """A caller's JSON schema that homeo will not use; the message says why and where."""


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # the error comes back to the caller instead
    options.max_mem = 8 << 20
    return options


_OPTIONS = _options()


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _OPTIONS)


def _search(pattern: str, text: str) -> bool:
    return _compiled(pattern).search(text) is not None


def _pattern(validator: Validator, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Validator, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Validator, additional: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = sorted(key for key in instance if key not in properties
                    and not any(_search(pattern, key) for pattern in patterns))
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        listed = ", ".join(repr(extra) for extra in extras)
        if patterns:
            yield ValidationError(f"{listed} match none of the patterns {sorted(patterns)!r}")
        else:
            yield ValidationError(f"Additional properties are not allowed ({listed} unexpected)")


def _formats() -> FormatChecker:
    """Draft 2020-12's format checks, with `regex` (which the metaschema applies
    to every `pattern`) compiled by RE2 instead of `re`."""
    formats = FormatChecker(formats=())
    formats.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)

    @formats.checks("regex", raises=re2.error)
    def _is_re2(instance: object) -> bool:
        return not isinstance(instance, str) or _compiled(instance) is not None

    return formats


RE2Validator = validators.extend(
    Draft202012Validator,
    validators={
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    },
    format_checker=_formats(),
)


def checked_validator(schema: Any) -> Validator:
    """A validator for `schema`, or SchemaRefused naming what is wrong. CPU work:
    call it off the event loop."""
    _check_size(schema)
    if not isinstance(schema, (dict, bool)):
        raise SchemaRefused("the JSON schema must be an object (or true/false)")
    nodes = dict(_schemas(schema))  # references and patterns, with precise messages
    try:
        # The metaschema, with `regex` on RE2 (check_schema would pick the stock checker).
        RE2Validator.check_schema(schema, format_checker=RE2Validator.FORMAT_CHECKER)
    except SchemaError as error:
        where = _pointer(error.absolute_path)
        raise SchemaRefused(f"the JSON schema is invalid at {where}: {error.message}") from None
    _check_in_place_loops(schema, nodes)
    return RE2Validator(schema)


def nesting_depth(value: Any, limit: int) -> int:
    """How deep `value` nests, counting no further than `limit` + 1 (without recursion)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item if isinstance(
            item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_size(schema: Any) -> None:
    count = 0
    stack = [(schema, 1)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise SchemaRefused(f"the JSON schema nests deeper than {MAX_DEPTH} levels;"
                                " flatten it or move parts into $defs")
        if count > MAX_NODES:
            raise SchemaRefused(f"the JSON schema has more than {MAX_NODES} values; send a"
                                " smaller one")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _pointer(path: Any) -> str:
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in path]
    return "#/" + "/".join(parts) if parts else "#"


def _schemas(root: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(JSON pointer, subschema) for every object subschema, by keyword meaning
    (so `enum` values or a property called `$ref` are not taken for schemas),
    checking each one's references and patterns on the way."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), root)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            continue
        where = _pointer(path)
        _check_node(node, where, is_root=not path)
        yield where, node
        for keyword in _ONE:
            if keyword in node:
                stack.append(((*path, keyword), node[keyword]))
        for keyword in _LIST:
            if isinstance(node.get(keyword), list):
                stack.extend(((*path, keyword, i), item) for i, item in enumerate(node[keyword]))
        for keyword in _MAP:
            if isinstance(node.get(keyword), dict):
                stack.extend(((*path, keyword, name), item)
                             for name, item in node[keyword].items())


def _check_node(node: Mapping[str, Any], where: str, *, is_root: bool) -> None:
    for keyword in _REFS:
        reference = node.get(keyword)
        if isinstance(reference, str) and not reference.startswith("#"):
            raise SchemaRefused(
                f"{keyword} {reference!r} at {where} is not local: only references inside"
                " the schema (#, #/$defs/NAME) are allowed; put the referenced schema in $defs"
            )
    if "$id" in node and not is_root:
        raise SchemaRefused(f"$id at {where}: a nested $id is not supported; use $defs and"
                            " #/$defs/NAME references")
    patterns = [("pattern", node["pattern"])] if isinstance(node.get("pattern"), str) else []
    if isinstance(node.get("patternProperties"), dict):
        patterns += [("patternProperties", key) for key in node["patternProperties"]]
        if "unevaluatedProperties" in node:
            raise SchemaRefused(f"at {where}: unevaluatedProperties together with"
                                " patternProperties is not supported; use additionalProperties")
    for keyword, pattern in patterns:
        _check_pattern(keyword, pattern, where)


def _check_pattern(keyword: str, pattern: str, where: str) -> None:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise SchemaRefused(f"{keyword} at {where} is longer than {MAX_PATTERN_CHARS}"
                            " characters")
    try:
        _compiled(pattern)
    except re2.error as error:
        reason = error.args[0].decode(errors="replace") if error.args and isinstance(
            error.args[0], bytes) else str(error)
        raise SchemaRefused(
            f"{keyword} {pattern!r} at {where} cannot run on the linear-time regex engine"
            f" (RE2): {reason}; lookarounds and backreferences are not available"
        ) from None


def _resolve(root: Any, reference: str, anchors: Mapping[str, Any]) -> Any:
    fragment = unquote(reference[1:])
    if fragment and not fragment.startswith("/"):
        return anchors.get(fragment)
    node = root
    for part in fragment.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _check_in_place_loops(root: Any, nodes: Mapping[str, dict[str, Any]]) -> None:
    """Refuse references that lead back to a schema on the same part of the
    answer (validation would never end), and chains of them deeper than MAX_DEPTH."""
    anchors = {node[key]: node for node in nodes.values()
               for key in ("$anchor", "$dynamicAnchor") if isinstance(node.get(key), str)}
    where_of = {id(node): where for where, node in nodes.items()}

    def next_in_place(node: dict[str, Any]) -> list[dict[str, Any]]:
        found = [node[k] for k in _IN_PLACE_ONE if isinstance(node.get(k), dict)]
        for keyword in _IN_PLACE_LIST:
            found += [s for s in node.get(keyword, []) or [] if isinstance(s, dict)]
        dependent = node.get("dependentSchemas")
        if isinstance(dependent, dict):
            found += [s for s in dependent.values() if isinstance(s, dict)]
        for keyword in _REFS:
            if isinstance(node.get(keyword), str):
                target = _resolve(root, node[keyword], anchors)
                if target is None:
                    raise SchemaRefused(f"{keyword} {node[keyword]!r} at {where_of[id(node)]}"
                                        " points at nothing in the schema")
                if isinstance(target, dict):
                    found.append(target)
        return found

    done: set[int] = set()
    for start in nodes.values():
        if id(start) in done:
            continue
        # Iterative depth-first search; `path` holds the chain being followed.
        path: list[tuple[dict[str, Any], Iterator[dict[str, Any]]]] = [
            (start, iter(next_in_place(start)))]
        on_path = {id(start)}
        while path:
            node, successors = path[-1]
            child = next(successors, None)
            if child is None:
                path.pop()
                on_path.discard(id(node))
                done.add(id(node))
                continue
            if id(child) in on_path:
                raise SchemaRefused(
                    f"the JSON schema loops at {where_of.get(id(node), '#')}: its references"
                    " lead back to themselves without descending into the answer"
                )
            if id(child) in done:
                continue
            if len(path) >= MAX_DEPTH:
                raise SchemaRefused(f"the JSON schema's references chain deeper than"
                                    f" {MAX_DEPTH} levels at {where_of.get(id(child), '#')}")
            path.append((child, iter(next_in_place(child))))
            on_path.add(id(child))
