"""Token budgets: per run (the agent's `budget:`), per agent and per tenant (settings).

Every budget has a hard limit, which fails the run before the model call that
would go past it, and a soft limit, which logs one warning per run. Both are
checked against the tokens used so far, before each model call: a call's
size is unknown until it returns, so a run stops at the first call after its
usage reached the limit, never in the middle of one.

A run's own usage is `RunState.usage` (the runner adds each step's usage to
it, and it is checkpointed with the state); tenant and agent usage over the
last 24 hours come from the store, which sums the steps of every run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from homeo.config import Settings
from homeo.engine.errors import RunFailed
from homeo.observe import logs
from homeo.store.base import Store, read_async

log = logs.get_logger("homeo.budgets")

DAY_SECONDS = 86_400.0


class RunBudget(BaseModel):
    """An agent's `budget:` in its YAML: tokens (input + output) one run may use."""

    model_config = ConfigDict(extra="forbid")

    run_tokens: int | None = Field(None, ge=1, description="Hard limit: the run fails.")
    soft_run_tokens: int | None = Field(None, ge=1, description="Soft limit: a warning.")


class BudgetExceeded(RunFailed):
    """A hard token limit is reached; more model calls would go past it."""


@dataclass(frozen=True)
class Limits:
    """Tenant and agent limits over a rolling 24 hours (None: no limit)."""

    tenant_tokens_per_day: int | None = None
    soft_tenant_tokens_per_day: int | None = None
    agent_tokens_per_day: int | None = None
    soft_agent_tokens_per_day: int | None = None

    @property
    def any(self) -> bool:
        return any(
            limit is not None
            for limit in (
                self.tenant_tokens_per_day,
                self.soft_tenant_tokens_per_day,
                self.agent_tokens_per_day,
                self.soft_agent_tokens_per_day,
            )
        )


class TenantBudgets:
    """Checks a tenant's and an agent's usage in the store against `limits`."""

    def __init__(
        self, store: Store, limits: Limits, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.limits = limits
        self.clock = clock

    async def check(self, tenant_id: str, agent: str | None, warned: set[str]) -> list[str]:
        """Raise BudgetExceeded at a hard limit; return the soft limits newly
        reached (not in `warned`), after logging a warning for each. `agent`
        None (a direct model call, /v1/chat/completions) checks the tenant only."""
        limits = self.limits
        if not limits.any:
            return []
        since = self.clock() - DAY_SECONDS
        checks = [
            ("HOMEO_TENANT_TOKENS_PER_DAY", "HOMEO_SOFT_TENANT_TOKENS_PER_DAY", None,
             f"tenant {tenant_id!r}", limits.tenant_tokens_per_day,
             limits.soft_tenant_tokens_per_day),
        ]
        if agent is not None:
            checks.append(
                ("HOMEO_AGENT_TOKENS_PER_DAY", "HOMEO_SOFT_AGENT_TOKENS_PER_DAY", agent,
                 f"agent {agent!r} of tenant {tenant_id!r}", limits.agent_tokens_per_day,
                 limits.soft_agent_tokens_per_day)
            )
        reached: list[str] = []
        for hard_name, soft_name, only_agent, who, hard, soft in checks:
            if hard is None and soft is None:
                continue
            used = await self._usage(tenant_id, since, only_agent)
            if hard is not None and used >= hard:
                raise BudgetExceeded(
                    f"token budget {hard_name}={hard} is used up: {who} used {used} tokens"
                    " in the last 24 hours; wait for older usage to age out or raise the limit"
                )
            if soft is not None and used >= soft and soft_name not in warned:
                log.warning("soft token budget reached", budget=soft_name, limit=soft,
                            used=used, tenant_id=tenant_id, agent=agent)
                reached.append(soft_name)
        return reached

    async def _usage(self, tenant_id: str, since: float, agent: str | None) -> int:
        totals = await read_async(self.store, self.store.usage, tenant_id, since=since,
                                  agent=agent)
        return totals.total_tokens


def tenant_budgets(settings: Settings, store: Store) -> TenantBudgets | None:
    """Tenant and agent token limits from the settings; None when none is set."""
    limits = Limits(
        tenant_tokens_per_day=settings.tenant_tokens_per_day,
        soft_tenant_tokens_per_day=settings.soft_tenant_tokens_per_day,
        agent_tokens_per_day=settings.agent_tokens_per_day,
        soft_agent_tokens_per_day=settings.soft_agent_tokens_per_day,
    )
    return TenantBudgets(store, limits) if limits.any else None


def check_run_budget(
    budget: RunBudget, used: int, warned: set[str], share: int | None = None
) -> list[str]:
    """The run's own limits; same contract as `TenantBudgets.check`. `share` is a
    child run's part of its parent's budget (engine/subagents.py)."""
    if share is not None and used >= share:
        raise BudgetExceeded(
            f"this sub-agent run's share of its parent's token budget ({share} tokens, what"
            f" the parent had left when it started this run) is used up: it used {used}"
            " tokens; raise the parent agent's budget.run_tokens or give it a smaller task"
        )
    if budget.run_tokens is not None and used >= budget.run_tokens:
        raise BudgetExceeded(
            f"token budget budget.run_tokens={budget.run_tokens} is used up: the run used"
            f" {used} tokens; raise budget.run_tokens in the agent's definition or give it"
            " a smaller task"
        )
    name = "budget.soft_run_tokens"
    if budget.soft_run_tokens is not None and used >= budget.soft_run_tokens and (
        name not in warned
    ):
        log.warning("soft token budget reached", budget=name, limit=budget.soft_run_tokens,
                    used=used)
        return [name]
    return []
