"""Where a run's output comes from: the model's words, or its last tool result.

A small model picks a tool and its arguments well (a grammar constrains
them) but writes poor prose about the result ("The original code returns 391
when the result is 391."). An agent says where its output comes from:

    answer: model          the model's final answer, as written (the default)
    answer: quote_result   the model's final answer if it contains the last
                           tool result, else `answer_template` filled from it
    answer: tool_result    no closing model turn: once a tool call succeeds
                           (and none is left to make), `answer_template` is the output

`answer_template` is a format string over `result` (the tool's result as the
model saw it), `tool` (the tool's name) and the call's arguments by name,
e.g. "{expression} = {result}"; by default just "{result}".
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from homeo.llm.base import ToolCall, ToolSpec

AnswerSource = Literal["model", "quote_result", "tool_result"]
_BUILT_IN_FIELDS = ("result", "tool")


class _Blank(dict[str, Any]):
    """Arguments by name; an optional argument the model left out reads as empty."""

    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    source: AnswerSource = "model"
    template: str = "{result}"

    def check(self, tools: Iterable[ToolSpec]) -> None:
        """ValueError, saying what to write instead, unless every field of the
        template is `result`, `tool` or an argument of every tool."""
        specs = list(tools)
        if self.source == "model":
            return
        if not specs:
            raise ValueError(f"answer: {self.source} needs at least one tool; use answer: model")
        arguments = set.intersection(*(set(t.parameters.get("properties", {})) for t in specs))
        allowed = sorted(arguments) + list(_BUILT_IN_FIELDS)
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(self.template)
                      if field is not None]
        except ValueError as error:
            raise ValueError(f"answer_template {self.template!r} is not a format string:"
                             f" {error}; write literal braces as {{{{ and }}}}") from None
        for field in fields:
            if field not in allowed:
                raise ValueError(
                    f"answer_template field {{{field}}} is not one of"
                    f" {', '.join('{' + name + '}' for name in allowed)}"
                )

    def compose(self, call: ToolCall, result: str) -> str:
        """The template filled from `call` and its `result`."""
        values = _Blank(call.arguments)
        values.update(result=result, tool=call.name)
        return self.template.format_map(values)

    def choose(self, written: str, last: tuple[ToolCall, str] | None) -> str:
        """The run's output, given the model's final answer and the last tool
        call that succeeded (with its result), if any."""
        if self.source == "model" or last is None:
            return written
        call, result = last
        if self.source == "quote_result" and result.strip() in written:
            return written
        return self.compose(call, result)
