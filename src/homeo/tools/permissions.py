"""Which tools a tenant may call, and the gate every tool call passes.

An agent may call only the tools its definition lists (the tool node knows no
others). On top of that the operator sets a policy per tenant, HOMEO_TOOL_POLICY:

    {"*":    {"deny": ["shell", "http_get"]},
     "acme": {"allow": ["calculator", "python", "mcp:files/*"]}}

A tenant's own entry is used if it has one, else the `*` entry, else every
listed tool is allowed. `deny` always wins; an `allow` list, when given, is
the only tools allowed. A pattern with `:` matches where the tool came from
(`homeo.tools.builtin:python`, `mcp:files/read`), one without matches the
tool's name; `*` and `?` are wildcards.
"""

from __future__ import annotations

import fnmatch

import structlog
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from homeo.ratelimit import RateLimiter
from homeo.tools.registry import Tool, ToolError

log = structlog.get_logger("homeo.tools")

ANY_TENANT = "*"


class ToolDenied(ToolError):
    """A tool call outside the tenant's permission."""


class ToolRateLimited(ToolError):
    """A tool was called more often than its rate limit allows."""


class TenantToolRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow: list[str] | None = Field(None, description="Only these tools; absent means all.")
    deny: list[str] = Field(default_factory=list, description="Never these tools.")

    @field_validator("allow", "deny")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or []:
            if not pattern.strip():
                raise ValueError("a tool pattern must not be empty")
        return value

    def permits(self, tool: Tool) -> bool:
        if any(_matches(pattern, tool) for pattern in self.deny):
            return False
        return self.allow is None or any(_matches(pattern, tool) for pattern in self.allow)


def _matches(pattern: str, tool: Tool) -> bool:
    subject = tool.source if ":" in pattern else tool.name
    return fnmatch.fnmatchcase(subject, pattern)


class ToolPolicy(RootModel[dict[str, TenantToolRule]]):
    """Tenant (or `*`) -> its rule."""

    root: dict[str, TenantToolRule] = Field(default_factory=dict)

    def rule_for(self, tenant: str) -> TenantToolRule | None:
        return self.root.get(tenant, self.root.get(ANY_TENANT))

    def permits(self, tenant: str, tool: Tool) -> bool:
        rule = self.rule_for(tenant)
        return rule is None or rule.permits(tool)


class ToolGate:
    """Checks a tool call against the tenant's policy and the tool's rate limit.

    One gate (and so one set of rate-limit buckets) serves every agent of a
    process; pass `limiter` with a fake clock in tests."""

    def __init__(self, policy: ToolPolicy | None = None, limiter: RateLimiter | None = None):
        self.policy = policy or ToolPolicy()
        self.limiter = limiter or SHARED_LIMITER

    def admit(self, tenant: str, agent: str, tool: Tool) -> None:
        """Return if the call may go ahead; else log it and raise ToolDenied
        (permission) or ToolRateLimited (rate limit), whose message the model sees."""
        if not self.policy.permits(tenant, tool):
            log.warning("tool_call_denied", tenant=tenant, agent=agent, tool=tool.name,
                        source=tool.source, reason="policy")
            raise ToolDenied(
                f"tool {tool.name!r} is not permitted for tenant {tenant!r} (tool policy);"
                " answer without it"
            )
        if tool.rate_limit is None:
            return
        wait = self.limiter.take((tenant, tool.source or tool.name), tool.rate_limit)
        if wait > 0:
            log.warning("tool_call_rate_limited", tenant=tenant, agent=agent, tool=tool.name,
                        source=tool.source, limit=str(tool.rate_limit))
            raise ToolRateLimited(
                f"tool {tool.name!r} is rate limited to {tool.rate_limit} per tenant;"
                f" the next call is possible in {wait:.1f}s; answer without it or try later"
            )


# Buckets outlive agent rebuilds (a changed definition must not reset a limit).
SHARED_LIMITER = RateLimiter()
