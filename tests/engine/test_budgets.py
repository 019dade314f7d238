"""Token budgets per run, per agent and per tenant, on a real SQLite store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from homeo.backends import Backends, open_backends
from homeo.config import Settings
from homeo.engine.agents import AgentSpec
from homeo.engine.budgets import DAY_SECONDS, BudgetExceeded, Limits, RunBudget, TenantBudgets
from homeo.engine.errors import RunInterrupted
from homeo.engine.react import tool_calling_graph
from homeo.engine.runner import execute
from homeo.engine.submit import submit_run
from homeo.llm.base import Message, ModelResponse, ToolSpec, Usage
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.runtime import Runtime
from homeo.store.models import NewRun, Run, UsageEvent
from homeo.tools.registry import from_function


def word_count(text: str) -> int:
    """Count words.

    Args:
        text: the text
    """
    return len(text.split())


def counting_model(turns_before_answer: int = 10, tokens: int = 60) -> ScriptedModel:
    """Calls word_count (on a new text each time: a repeated call would be answered
    from its record) until it has seen `turns_before_answer` results; every reply
    costs `tokens` (40 in, 20 out when tokens=60)."""

    def reply(messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        done = sum(m.role == "tool" for m in messages)
        message = tool_call("word_count", text=f"a b c {done}") \
            if done < turns_before_answer and tools \
            else Message(role="assistant", content=f"done after {done}")
        usage = Usage(input_tokens=tokens * 2 // 3, output_tokens=tokens - tokens * 2 // 3)
        return ModelResponse(message=message, usage=usage)

    return ScriptedModel(reply)


@pytest.fixture
def backends(tmp_path: Path):
    opened = open_backends(f"sqlite:///{tmp_path / 'budgets.db'}")
    yield opened
    opened.close()


def new_run(backends: Backends, tenant: str = "acme", agent: str = "counter") -> Run:
    run, _ = backends.store.create_run(NewRun(tenant_id=tenant, agent=agent, input="count"))
    return backends.store.transition_run(tenant, run.id, "running", allowed_from={"queued"})


def run_agent(backends: Backends, model: ScriptedModel, *, budget: RunBudget | None = None,
              budgets: TenantBudgets | None = None, tenant: str = "acme",
              agent: str = "counter") -> tuple[Run, str | BudgetExceeded]:
    run = new_run(backends, tenant, agent)
    graph = tool_calling_graph(model, [from_function(word_count)], max_steps=20, budget=budget)
    try:
        return run, asyncio.run(execute(backends.store, run, graph, budgets=budgets))
    except BudgetExceeded as error:
        return run, error


def test_hard_run_budget_fails_before_the_call_that_would_exceed_it(backends: Backends) -> None:
    model = counting_model(tokens=60)
    run, result = run_agent(backends, model, budget=RunBudget(run_tokens=100))
    assert isinstance(result, BudgetExceeded)
    assert str(result).startswith(
        "token budget budget.run_tokens=100 is used up: the run used 120 tokens"
    )
    assert len(model.requests) == 2  # the third call was never made
    steps = backends.store.list_steps("acme", run.id)
    assert steps[-1].kind == "model" and steps[-1].status == "failed"
    assert "budget.run_tokens=100" in steps[-1].error
    stored = backends.store.get_run("acme", run.id)
    assert stored.input_tokens + stored.output_tokens == 120
    assert stored.checkpoint["state"]["usage"] == {"input_tokens": 80, "output_tokens": 40,
                                                  "cost_usd": 0.0}


def test_soft_run_budget_warns_once_and_the_run_goes_on(backends: Backends) -> None:
    model = counting_model(turns_before_answer=4, tokens=60)
    with capture_logs() as logs:
        run, result = run_agent(backends, model, budget=RunBudget(soft_run_tokens=100,
                                                                  run_tokens=1000))
    assert result == "done after 4"
    warnings = [e for e in logs if e["event"] == "soft token budget reached"]
    assert len(warnings) == 1
    assert warnings[0]["budget"] == "budget.soft_run_tokens" and warnings[0]["used"] == 120
    assert warnings[0]["log_level"] == "warning"
    state = backends.store.get_run("acme", run.id).checkpoint["state"]
    assert state["warned_budgets"] == ["budget.soft_run_tokens"]
    assert state["usage"]["input_tokens"] + state["usage"]["output_tokens"] == 300


def test_run_usage_survives_a_resume(backends: Backends) -> None:
    model = counting_model(tokens=60)
    run = new_run(backends)
    graph = tool_calling_graph(model, [from_function(word_count)], max_steps=20,
                               budget=RunBudget(run_tokens=150))
    stops = iter([False, False, True])  # model, tool, then stop
    with pytest.raises(RunInterrupted):
        asyncio.run(execute(backends.store, run, graph, stopping=lambda: next(stops, True)))
    resumed = backends.store.get_run("acme", run.id)
    with pytest.raises(BudgetExceeded, match="the run used 180 tokens"):
        asyncio.run(execute(backends.store, resumed, graph))
    assert len(model.requests) == 3


def test_tenant_budget_counts_every_run_of_the_tenant_over_24_hours(backends: Backends) -> None:
    limits = Limits(tenant_tokens_per_day=100)
    budgets = TenantBudgets(backends.store, limits)
    # The first run of acme uses 120 tokens (the check before its second call saw 60).
    _, first = run_agent(backends, counting_model(turns_before_answer=1), budgets=budgets)
    assert first == "done after 1"
    model = counting_model()
    _, second = run_agent(backends, model, budgets=budgets)
    assert isinstance(second, BudgetExceeded)
    assert str(second) == (
        "token budget HOMEO_TENANT_TOKENS_PER_DAY=100 is used up: tenant 'acme' used 120 tokens"
        " in the last 24 hours; wait for older usage to age out or raise the limit"
    )
    assert model.requests == []
    # Another tenant has its own budget...
    _, other = run_agent(backends, counting_model(turns_before_answer=0), budgets=budgets,
                         tenant="globex")
    assert other == "done after 0"
    # ...and a day later acme's usage has aged out.
    tomorrow = TenantBudgets(backends.store, limits, clock=lambda: time.time() + DAY_SECONDS + 1)
    _, later = run_agent(backends, counting_model(turns_before_answer=0), budgets=tomorrow)
    assert later == "done after 0"


def test_agent_budget_counts_only_that_agent(backends: Backends) -> None:
    budgets = TenantBudgets(backends.store, Limits(agent_tokens_per_day=50,
                                                   soft_tenant_tokens_per_day=50))
    with capture_logs() as logs:
        _, first = run_agent(backends, counting_model(turns_before_answer=0), budgets=budgets,
                             agent="summarise")
        _, blocked = run_agent(backends, counting_model(), budgets=budgets, agent="summarise")
        _, other = run_agent(backends, counting_model(turns_before_answer=0), budgets=budgets,
                             agent="translate")
    assert first == "done after 0" and other == "done after 0"
    assert isinstance(blocked, BudgetExceeded)
    assert "HOMEO_AGENT_TOKENS_PER_DAY=50 is used up: agent 'summarise' of tenant 'acme' used" \
        " 60 tokens" in str(blocked)
    soft = [e["budget"] for e in logs if e["event"] == "soft token budget reached"]
    assert soft == ["HOMEO_SOFT_TENANT_TOKENS_PER_DAY"] * 2  # the blocked run and 'translate'


def test_settings_limits_fail_runs_through_the_worker(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, poll_seconds=0.01, tenant_tokens_per_day=10)
    runtime = Runtime.open(settings)
    try:
        runtime.models.add("test:talker", counting_model(turns_before_answer=0, tokens=30))
        spec = AgentSpec(name="talker", model="test:talker", budget={"run_tokens": 1000})
        runtime.agents.publish("default", {"talker": spec})
        ids = [
            submit_run(runtime.backends, NewRun(tenant_id="default", agent="talker",
                                                input="hi"), max_attempts=3)[0].id
            for _ in range(2)
        ]
        asyncio.run(runtime.worker(1).run_until_idle())
        first, second = (runtime.backends.store.get_run("default", i) for i in ids)
        assert (first.status, first.output) == ("succeeded", "done after 0")
        assert second.status == "failed"
        assert "HOMEO_TENANT_TOKENS_PER_DAY=10 is used up" in second.error
        assert "used 30 tokens" in second.error
    finally:
        asyncio.run(runtime.aclose())


def test_an_agent_budget_is_validated() -> None:
    with pytest.raises(ValueError, match="run_tokens"):
        AgentSpec(name="x", budget={"run_tokens": 0})
    with pytest.raises(ValueError, match="extra"):
        AgentSpec(name="x", budget={"tokens": 5})


def test_a_tenants_direct_model_calls_count_for_its_runs_but_not_for_an_agent(
    backends: Backends,
) -> None:
    # /v1/chat/completions and /v1/embeddings record their tokens like this.
    backends.store.record_usage([UsageEvent(tenant_id="acme", source="chat", model="default",
                                            input_tokens=100, at=time.time())])
    tenant = TenantBudgets(backends.store, Limits(tenant_tokens_per_day=100))
    model = counting_model(turns_before_answer=0)
    _, result = run_agent(backends, model, budgets=tenant)
    assert isinstance(result, BudgetExceeded)
    assert "HOMEO_TENANT_TOKENS_PER_DAY=100 is used up: tenant 'acme' used 100" in str(result)
    assert model.requests == []

    agent = TenantBudgets(backends.store, Limits(agent_tokens_per_day=100))
    assert run_agent(backends, model, budgets=agent)[1] == "done after 0"
    # A direct call has no agent: only the tenant's limits apply to it.
    assert asyncio.run(agent.check("acme", None, set())) == []
    with pytest.raises(BudgetExceeded):
        asyncio.run(tenant.check("acme", None, set()))
