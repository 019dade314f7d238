"""Tenant tool policies and rate limits, checked by the tool node when a call is made."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from homeo.backends import open_backends
from homeo.config import SettingsError, load_settings
from homeo.runtime import Runtime
from homeo.engine.agents import AgentSpec, build_agent
from homeo.engine.graph import RunState, RunContext
from homeo.engine.react import ToolNode
from homeo.engine.runner import execute
from homeo.llm.base import Message
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.store.models import NewRun
from homeo.tools.permissions import ToolGate, ToolPolicy
from homeo.ratelimit import RateLimiter
from homeo.tools.registry import Tool, ToolError, from_function, load_tool, tool

RAN: list[str] = []


@tool(rate_limit="2/minute")
def lookup(term: str) -> str:
    """Look a term up.

    Args:
        term: what to look up
    """
    RAN.append(term)
    return f"found {term}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(data: dict[str, Any]) -> ToolPolicy:
    return ToolPolicy.model_validate(data)


def call(node: ToolNode, name: str, tenant: str = "acme", **arguments: Any) -> dict[str, Any]:
    state = RunState(pending_tool_calls=list(tool_call(name, **arguments).tool_calls))
    context = RunContext(tenant_id=tenant, run_id="r1", agent="helper")
    outcome = asyncio.run(node.run(state, context))
    assert outcome.state.messages[-1].role == "tool"  # the model sees the result either way
    return outcome.output


def node(gate: ToolGate, *tools: Tool) -> ToolNode:
    chosen = tools or (load_tool("homeo.tools.builtin:calculator"), from_function(lookup))
    return ToolNode({t.name: t for t in chosen}, max_tool_errors=10, gate=gate)


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()


def test_no_policy_allows_every_tool_the_agent_lists() -> None:
    tools = node(ToolGate(policy({})))
    assert call(tools, "calculator", expression="2*21") == {"result": 42}


def test_a_denied_tool_fails_the_step_with_an_error_the_model_sees_and_is_logged() -> None:
    tools = node(ToolGate(policy({"acme": {"deny": ["lookup"]}})))
    with capture_logs() as logs:
        output = call(tools, "lookup", term="x")
    assert output == {"error": "tool 'lookup' is not permitted for tenant 'acme' (tool policy);"
                               " answer without it"}
    assert RAN == []
    assert logs == [{"event": "tool_call_denied", "log_level": "warning", "tenant": "acme",
                     "agent": "helper", "tool": "lookup",
                     "source": "tests.tools.test_permissions:lookup", "reason": "policy"}]


def test_an_allow_list_admits_only_what_it_names() -> None:
    gate = ToolGate(policy({"acme": {"allow": ["calculator"]}}))
    tools = node(gate)
    assert call(tools, "calculator", expression="1+1") == {"result": 2}
    assert "not permitted" in call(tools, "lookup", term="x")["error"]


def test_a_tenant_entry_replaces_the_star_entry_and_deny_wins() -> None:
    gate = ToolGate(policy({"*": {"deny": ["calculator", "lookup"]},
                            "acme": {"allow": ["*"], "deny": ["lookup"]}}))
    tools = node(gate)
    assert call(tools, "calculator", tenant="acme", expression="3") == {"result": 3}
    assert "not permitted" in call(tools, "lookup", tenant="acme", term="x")["error"]
    assert "not permitted for tenant 'other'" in call(tools, "calculator", tenant="other",
                                                        expression="3")["error"]


def test_patterns_with_a_colon_match_where_the_tool_came_from() -> None:
    gate = ToolGate(policy({"*": {"allow": ["homeo.tools.builtin:*"]}}))
    tools = node(gate)
    assert call(tools, "calculator", expression="2") == {"result": 2}
    assert "not permitted" in call(tools, "lookup", term="x")["error"]


def test_a_tool_the_agent_does_not_list_is_refused_before_any_policy() -> None:
    tools = node(ToolGate(policy({"*": {"allow": ["*"]}})))
    assert "not available to this agent" in call(tools, "shell", command="id")["error"]


def test_repeated_refusals_fail_the_run() -> None:
    from homeo.engine.errors import RunFailed

    gate = ToolGate(policy({"*": {"deny": ["lookup"]}}))
    tools = ToolNode({"lookup": from_function(lookup)}, max_tool_errors=0, gate=gate)
    with pytest.raises(RunFailed, match="not permitted"):
        call(tools, "lookup", term="x")


def test_the_policy_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEO_TOOL_POLICY", '{"acme": {"allow": ["python"], "deny": []}}')
    assert load_settings().tool_policy.permits("acme", from_function(lookup)) is False
    monkeypatch.setenv("HOMEO_TOOL_POLICY", '{"acme": {"alow": ["python"]}}')
    with pytest.raises(SettingsError, match=r"HOMEO_TOOL_POLICY.*Extra inputs.*acme\.alow"):
        load_settings()
    monkeypatch.setenv("HOMEO_TOOL_POLICY", '{"acme": {"deny": "python"}}')
    with pytest.raises(SettingsError, match="valid list"):
        load_settings()


def test_a_rate_limit_gives_a_burst_then_refills_with_the_clock() -> None:
    clock = FakeClock()
    tools = node(ToolGate(limiter=RateLimiter(clock)))
    assert call(tools, "lookup", term="a") == {"result": "found a"}
    assert call(tools, "lookup", term="b") == {"result": "found b"}
    with capture_logs() as logs:
        refused = call(tools, "lookup", term="c")
    assert refused == {"error": "tool 'lookup' is rate limited to 2/minute per tenant; the next"
                                " call is possible in 30.0s; answer without it or try later"}
    assert logs[0]["event"] == "tool_call_rate_limited" and logs[0]["tenant"] == "acme"
    assert call(tools, "lookup", tenant="other", term="d") == {"result": "found d"}
    clock.now += 30
    assert call(tools, "lookup", term="e") == {"result": "found e"}
    assert "rate limited" in call(tools, "lookup", term="f")["error"]
    assert RAN == ["a", "b", "d", "e"]


def test_rate_limits_are_written_as_calls_per_period() -> None:
    assert from_function(lookup).rate_limit is not None
    assert str(from_function(lookup).rate_limit) == "2/minute"
    for wrong in ("2 per minute", "0/second", "5/day"):
        with pytest.raises(ValueError, match="N/second, N/minute or N/hour"):
            tool(rate_limit=wrong)


def test_a_slow_tool_times_out_with_an_error_the_model_sees() -> None:
    @tool(timeout_seconds=0.2)
    async def dawdle() -> str:
        """Takes too long."""
        await asyncio.sleep(5)
        return "never"

    tools = node(ToolGate(), from_function(dawdle))
    assert call(tools, "dawdle") == {"error": "tool 'dawdle' timed out after 0.2s"}


def test_refusals_are_tool_errors_the_node_sends_back() -> None:
    from homeo.tools.permissions import ToolDenied, ToolRateLimited

    assert issubclass(ToolDenied, ToolError) and issubclass(ToolRateLimited, ToolError)


def test_the_policy_setting_reaches_agents_and_the_log_names_the_run_s_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOMEO_TOOL_POLICY", '{"*": {"deny": ["homeo.tools.builtin:*"]}}')
    monkeypatch.setenv("HOMEO_DATA_DIR", str(tmp_path / "data"))
    spec = AgentSpec(name="counter", tools=["homeo.tools.builtin:calculator"], max_steps=3)
    model = ScriptedModel([tool_call("calculator", expression="1+1"),
                           Message(role="assistant", content="no calculator for me")])
    runtime = Runtime.open(load_settings())  # the runtime hands the policy to its agents
    try:
        agent = build_agent(spec, model, runtime.agents.gate)
    finally:
        asyncio.run(runtime.aclose())
    backends = open_backends(f"sqlite:///{tmp_path / 'policy.db'}")
    try:
        run, _ = backends.store.create_run(NewRun(tenant_id="t1", agent="counter", input="1+1"))
        run = backends.store.transition_run("t1", run.id, "running", allowed_from={"queued"})
        with capture_logs() as logs:
            output = asyncio.run(execute(backends.store, run, agent.graph))
        assert output == "no calculator for me"
        step = backends.store.list_steps("t1", run.id)[1]
        assert step.output == {"error": "tool 'calculator' is not permitted for tenant 't1'"
                                        " (tool policy); answer without it"}
    finally:
        backends.close()
    denied = [entry for entry in logs if entry["event"] == "tool_call_denied"]
    assert [(e["tenant"], e["agent"], e["tool"]) for e in denied] == [("t1", "counter",
                                                                       "calculator")]
