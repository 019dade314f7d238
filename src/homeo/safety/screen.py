"""The guards applied by policy: what a run (or the API) does with a text at a
boundary. `SafetyGuards` is built once per process by the runtime, with the
operator's tenant policies; it hands each run a `Screen`, the run's resolved
policy and the guards, through the run's context. Nothing here reads settings.

A screening runs the detectors the boundary's rules name (each guard loaded
once per process, on first use; at tool_output and retrieved the injection
classifier reads the text as a document, with its document head and that
head's threshold), applies each rule's threshold, and answers
the strongest action among the findings (block > approve > redact > flag) and
the text to pass on (with pii and secrets spans masked where the rule says
redact). The caller does what the action means at its boundary."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from homeo.safety import guards as safety_guards
from homeo.safety.policy import (
    STRENGTH,
    Action,
    Boundary,
    Detector,
    SafetyPolicy,
    TenantPolicies,
)
from homeo.safety.vault import mask
from homeo.safety.verdict import Guard, Verdict

# The detectors' own thresholds, used where a rule sets none (injection: its card's).
DEFAULT_THRESHOLDS: dict[str, float] = {"pii": 0.4, "secrets": 0.5}
DOCUMENTS: tuple[Boundary, ...] = ("tool_output", "retrieved")  # read as documents
Build = Callable[[Sequence[str]], list[Guard]]


def guard_key(name: Detector | str, boundary: Boundary) -> str:
    """Which built guard a detector is at a boundary: "injection:document" for
    the injection classifier at a document boundary, else the detector's name."""
    return f"{name}:document" if name == "injection" and boundary in DOCUMENTS else name


def _build_all_spans(names: Sequence[str]) -> list[Guard]:
    """The guards (by guard_key) with threshold 0, so every span comes back
    with its score and each rule applies its own threshold."""
    built = []
    for name in names:
        if name.startswith("injection"):
            from homeo.safety.head import HeadError
            from homeo.safety.injection import InjectionGuard

            reading = "document" if name == "injection:document" else "input"
            try:
                guard: Any = InjectionGuard(threshold=0.0, reading=reading)
            except HeadError as error:
                raise safety_guards.GuardUnavailable(str(error)) from None
            guard.default_threshold = float(guard.card["threshold"])
        elif name == "secrets":
            from homeo.safety.credentials import SecretsGuard

            guard = SecretsGuard(threshold=0.0)
        else:
            from homeo.safety.pii import PiiGuard

            guard = PiiGuard(threshold=0.0)
        built.append(guard)
    return built


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector's verdict at its rule's threshold, and the rule's action."""

    verdict: Verdict
    action: Action

    def to_json(self) -> dict[str, Any]:
        return {**self.verdict.to_json(), "action": self.action}


@dataclass(frozen=True, slots=True)
class Screening:
    """What the guards found in one text at one boundary. `action` is the
    strongest action of the flagged findings (None: nothing flagged); `text` is
    the text to pass on when the action is not block (redacted where a rule says)."""

    boundary: Boundary
    action: Action | None
    text: str
    findings: tuple[Finding, ...]
    # The run's placeholder map with what reversible rules masked in this text
    # (homeo.safety.vault); None when they masked nothing.
    vault: dict[str, str] | None = None

    @property
    def flagged(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.verdict.flagged)

    @property
    def reason(self) -> str:
        return "; ".join(f"{f.verdict.guard}: {f.verdict.reason}" for f in self.flagged)

    def to_json(self) -> dict[str, Any]:
        return {"boundary": self.boundary, "action": self.action,
                "verdicts": [finding.to_json() for finding in self.flagged]}


def judge(verdict: Verdict, threshold: float) -> Verdict:
    """`verdict` (from a guard run at threshold 0) at `threshold`."""
    spans = tuple(span for span in verdict.spans if span.score >= threshold)
    score = max([verdict.score, *(span.score for span in verdict.spans)])
    if not spans or score < threshold:
        return Verdict(verdict.guard, "clean", False, round(score, 4), threshold,
                       f"nothing at or above the threshold {threshold:.2f}"
                       f" (highest score {score:.2f})")
    kinds = ", ".join(sorted({span.kind for span in spans}))
    return replace(verdict, flagged=True, score=round(score, 4), threshold=threshold,
                   spans=spans, reason=f"{verdict.label} ({kinds}): score {score:.2f} >="
                                       f" {threshold:.2f}")


class SafetyGuards:
    """The process's guards and the operator's tenant policies (HOMEO_SAFETY)."""

    def __init__(self, policies: TenantPolicies | None = None, *,
                 build: Build = _build_all_spans) -> None:
        self.policies = policies or TenantPolicies()
        self._build = build
        self._guards: dict[str, Guard] = {}
        self._lock = threading.Lock()

    def policy(self, tenant: str, agent: SafetyPolicy | None = None) -> SafetyPolicy:
        return self.policies.resolve(tenant, agent)

    def screen(self, tenant: str, agent: SafetyPolicy | None = None) -> Screen | None:
        """What a run of `agent` for `tenant` checks; None when its policy checks nothing."""
        policy = self.policy(tenant, agent)
        return None if policy.empty else Screen(policy, self)

    def guard(self, name: str) -> Guard:
        with self._lock:
            if name not in self._guards:
                self._guards[name] = self._build([name])[0]
            return self._guards[name]

    def check(self, policy: SafetyPolicy, boundary: Boundary, text: str,
              only: Sequence[Action] | None = None,
              vault: Mapping[str, str] | None = None) -> Screening:
        """Screen `text` at `boundary` under `policy` (CPU work: call it in a
        thread from async code). `only`: just the rules with these actions.
        `vault`: the run's placeholders so far, which reversible rules extend.
        GuardUnavailable if a guard the policy needs cannot load."""
        rules = {name: rule for name, rule in policy.rules(boundary).items()
                 if only is None or rule.action in only}
        findings, reversible = [], []
        for name, rule in rules.items():
            guard = self.guard(guard_key(name, boundary))
            try:
                verdict = guard.check(text)
            except Exception as error:  # the encoder or spaCy failing to load or run
                raise safety_guards.GuardUnavailable(
                    f"guard {name}: {type(error).__name__}: {error}") from None
            threshold = rule.threshold if rule.threshold is not None else self._default(
                name, guard)
            findings.append(Finding(judge(verdict, threshold), rule.action))
            reversible.append(rule.reversible)
        flagged = [(f, back) for f, back in zip(findings, reversible) if f.verdict.flagged]
        action = max((f.action for f, _ in flagged), key=STRENGTH.__getitem__, default=None)
        masked = [(span, back) for f, back in flagged if f.action == "redact"
                  for span in f.verdict.spans]
        if not masked:
            return Screening(boundary, action, text, tuple(findings))
        before = dict(vault or {})
        shown, after = mask(text, [span for span, back in masked if not back], before,
                            reversible=[span for span, back in masked if back])
        return Screening(boundary, action, shown, tuple(findings),
                         vault=after if after != before else None)

    @staticmethod
    def _default(name: Detector | str, guard: Guard) -> float:
        return float(getattr(guard, "default_threshold", DEFAULT_THRESHOLDS.get(name, 0.5)))


@dataclass
class Screen:
    """One run's policy and the process's guards: what a node screens with."""

    policy: SafetyPolicy
    guards: SafetyGuards

    def watches(self, boundary: Boundary) -> bool:
        return bool(self.policy.rules(boundary))

    @property
    def one_at_a_time(self) -> bool:
        """Tool calls run one at a time: a result may make the run wait for a
        person's approval, or add placeholders to the run's vault."""
        return self.policy.reversible or any(
            rule.action == "approve" for boundary in ("tool_output", "retrieved")
            for rule in self.policy.rules(boundary).values())

    async def check(self, boundary: Boundary, text: str,
                    vault: Mapping[str, str] | None = None) -> Screening:
        return await asyncio.to_thread(self.guards.check, self.policy, boundary, text,
                                       None, vault)
