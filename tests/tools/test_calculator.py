"""The built-in `calculator`: arithmetic only, through the shared AST evaluator."""

from __future__ import annotations

import asyncio

import pytest

from homeo.engine.graph import RunState, RunContext
from homeo.engine.react import ToolNode
from homeo.llm.providers.scripted import tool_call
from homeo.tools.registry import ToolError, load_tool


def test_the_calculator_is_an_idempotent_builtin() -> None:
    calculator = load_tool("homeo.tools.builtin:calculator")
    assert calculator.name == "calculator" and calculator.idempotent
    assert calculator.source == "homeo.tools.builtin:calculator"
    assert calculator.function(expression="(2 + 3) * 4") == 20
    assert calculator.function(expression="7 / 2") == 3.5


def test_anything_but_arithmetic_is_refused() -> None:
    calculator = load_tool("homeo.tools.builtin:calculator")
    with pytest.raises(ToolError, match="expression: String should match pattern"):
        calculator.validate({"expression": "__import__('os').system('id')"})
    node = ToolNode({"calculator": calculator})
    state = RunState(pending_tool_calls=list(tool_call("calculator", expression="2**99999")
                                             .tool_calls))
    outcome = asyncio.run(node.run(state, RunContext(tenant_id="t", run_id="r")))
    assert outcome.output == {"error": "tool 'calculator' raised ValueError: exponent 99999 is"
                                       " too large (limit 1000)"}
