"""What the guards do at each boundary of a run, per tenant and per agent.

A policy names, for each boundary where text enters or leaves an agent, what
each detector's finding leads to:

    input:        the user's input to a run or to /v1/chat/completions
    tool_output:  a tool's result, before the model reads it
    retrieved:    a result of a tool that returns stored documents or memory
    output:       the model's answer, before it leaves

    {"tool_output": {"injection": "block"},
     "output": {"pii": {"action": "redact", "threshold": 0.5}, "secrets": "redact"}}

Actions: `block` (a run input or chat request is refused, a tool result is
replaced by a notice the model reads, an answer fails the run), `redact`
(spans replaced by `<KIND>`; pii and secrets only; with `reversible: true`, pii
only, by numbered placeholders the run maps back for its own tenant: see
homeo.safety.vault), `flag` (recorded, the run goes on), `approve` (the run waits for a person; tool_output and retrieved
only), `off`. A threshold overrides the detector's own.

The operator sets one per tenant (HOMEO_SAFETY: `{"TENANT or *": policy}`);
an agent's YAML `safety:` overrides it rule by rule for that agent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

Boundary = Literal["input", "tool_output", "retrieved", "output"]
Detector = Literal["injection", "pii", "secrets"]
Action = Literal["block", "approve", "redact", "flag", "off"]
BOUNDARIES: tuple[Boundary, ...] = ("input", "tool_output", "retrieved", "output")
DETECTORS: tuple[Detector, ...] = ("injection", "pii", "secrets")
# Of several findings in one text, the strongest action wins.
STRENGTH = {"off": 0, "flag": 1, "redact": 2, "approve": 3, "block": 4}
ANY_TENANT = "*"


class Rule(BaseModel):
    """What one detector's finding leads to at one boundary."""

    model_config = ConfigDict(extra="forbid")

    action: Action
    threshold: float | None = Field(
        None, ge=0, le=1, description="Flag at this score or above; unset: the detector's own.")
    reversible: bool = Field(
        False, description="redact only: numbered placeholders that the run restores in its"
                           " tool calls and its answer (homeo.safety.vault)")


class BoundaryRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    injection: Rule | None = None
    pii: Rule | None = None
    secrets: Rule | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        """`injection: block` is `injection: {action: block}`."""
        if isinstance(data, dict):
            return {key: {"action": value} if isinstance(value, str) else value
                    for key, value in data.items()}
        return data

    def rules(self) -> dict[Detector, Rule]:
        return {name: rule for name in DETECTORS if (rule := getattr(self, name)) is not None}


class SafetyPolicy(BaseModel):
    """Rules per boundary (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    input: BoundaryRules = Field(default_factory=BoundaryRules)
    tool_output: BoundaryRules = Field(default_factory=BoundaryRules)
    retrieved: BoundaryRules = Field(default_factory=BoundaryRules)
    output: BoundaryRules = Field(default_factory=BoundaryRules)

    @model_validator(mode="after")
    def _actions_fit(self) -> SafetyPolicy:
        for boundary in BOUNDARIES:
            for detector, rule in getattr(self, boundary).rules().items():
                where = f"{boundary}.{detector}"
                if rule.action == "approve" and boundary not in ("tool_output", "retrieved"):
                    raise ValueError(
                        f"{where}: approve makes a run wait for a person before the model reads"
                        " a tool result, so it works at tool_output and retrieved only; use"
                        " block or flag here")
                if rule.action == "redact" and detector == "injection":
                    raise ValueError(
                        f"{where}: an injection is a passage, not a value to mask: use block,"
                        " flag or approve (redact works for pii and secrets)")
                if rule.reversible and (rule.action != "redact" or detector != "pii"):
                    raise ValueError(
                        f"{where}: reversible is for redact of pii only (secrets are never"
                        " written down, so there is nothing to restore them from)")
        return self

    def rules(self, boundary: Boundary) -> dict[Detector, Rule]:
        """The boundary's rules, without those turned off."""
        return {name: rule for name, rule in getattr(self, boundary).rules().items()
                if rule.action != "off"}

    @property
    def reversible(self) -> bool:
        """Some rule masks values the run maps back (homeo.safety.vault)."""
        return any(rule.reversible for boundary in BOUNDARIES
                   for rule in self.rules(boundary).values())

    def over(self, base: SafetyPolicy) -> SafetyPolicy:
        """`base` with each rule this policy sets replacing base's."""
        merged: dict[str, dict[str, Any]] = {}
        for boundary in BOUNDARIES:
            rules = {**getattr(base, boundary).rules(), **getattr(self, boundary).rules()}
            merged[boundary] = {name: rule.model_dump() for name, rule in rules.items()}
        return SafetyPolicy.model_validate(merged)

    @property
    def empty(self) -> bool:
        return not any(self.rules(boundary) for boundary in BOUNDARIES)


class TenantPolicies(RootModel[dict[str, SafetyPolicy]]):
    """Tenant (or `*`) -> its policy: HOMEO_SAFETY."""

    root: dict[str, SafetyPolicy] = Field(default_factory=dict)

    def resolve(self, tenant: str, agent: SafetyPolicy | None = None) -> SafetyPolicy:
        """The policy of the tenant's own entry, else `*`'s, with the agent's rules over it."""
        base = self.root.get(tenant, self.root.get(ANY_TENANT, SafetyPolicy()))
        return base if agent is None else agent.over(base)
