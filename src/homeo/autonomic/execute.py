"""Plan and Execute, with their safety limits and the knowledge they keep.

Every loop step, after Analyze, `Executor.step`:

1. measures outcomes: a decision `settle_seconds` old is `cleared` when its
   diagnosis (its `problem`) no longer holds, else `persisted`. Executed
   decisions' outcomes are what Plan's posteriors count (`Store.decision_tally`). An executed
   action whose diagnosis persisted is undone (it did not help), which lets
   Plan try again, likely with another action.
2. undoes, with hysteresis, an action that worked: only once its diagnosis
   has been clear for `hold_seconds` without a break, so a flapping signal
   never turns a setting back and forth. Newest first, so settings go back
   through the values they came by.
3. executes the decisions a person approved; expires those still waiting
   when their diagnosis stopped holding.
4. plans for each diagnosis with no decision in force (by any loop: one
   decision per diagnosis at a time, a deployment's down, degraded and slow
   counting as one, `problem`; an action that worked stops counting
   once its diagnosis has come back and held for `settle_seconds`: it is no
   longer enough, so another may be added), within `max_actions_per_minute`
   over all loops sharing the store. What happens to a plan depends on `mode`:
       dry-run   recorded as `dry_run`; nothing changes
       approval  risky actions (risk >= `risky`) wait for approval
                 (`homeo autonomic approve`, POST .../approve); others run
       on        every action runs

Each loop settles and undoes its own decisions (the diagnoses it sees are
its own: a provider's state is per process). A decision its loop left
unsettled `adopt_after_seconds` past its settle time (that loop's process
stopped: a recycled worker's loop, say) is settled by whichever loop gets to
it first, by what that loop sees. Every executed or undone
action is an audit event (`autonomic.action`, `autonomic.revert`) in the
log of the tenant it concerns, or of the `system` tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from homeo.audit import AuditLog, Event
from homeo.autonomic.actuators import Actuators
from homeo.autonomic.analyze import TENANT_DIAGNOSES, Analysis
from homeo.autonomic.control import CONCURRENCY_KEY, supervised_pids
from homeo.autonomic.plan import ACTIONS, Plan, Planner, Situation
from homeo.ids import new_id
from homeo.observe import logs
from homeo.store.base import Store
from homeo.store.models import DecisionRecord

log = logs.get_logger("homeo.autonomic.execute")

Mode = Literal["dry-run", "approval", "on"]
# Decisions in force: one of them blocks a new decision for its diagnosis.
IN_FORCE = ("dry_run", "awaiting_approval", "approved", "executing", "executed")
SYSTEM_TENANT = "system"


def problem(kind: str, subject: str) -> tuple[str, str]:
    """What a diagnosis is about, for one decision at a time and for judging
    outcomes: a deployment's troubles (down, degraded, slow) are one problem,
    since one can turn into another (a breaker held open goes half-open behind
    the hold; a slow deployment starts timing out) and an action on the
    deployment answers them all. Any other diagnosis is its own."""
    return ("provider", subject) if kind.startswith("provider_") else (kind, subject)


@dataclass(frozen=True)
class Safety:
    mode: Mode = "dry-run"
    max_actions_per_minute: int = 6
    settle_seconds: float = 60.0
    hold_seconds: float = 120.0
    max_step: float = 0.5
    risky: float = 0.5  # actions this risky wait for approval in approval mode
    # A decision older than this no longer blocks new ones for its diagnosis
    # (its loop died; its control state has expired): the control state's TTL.
    in_force_seconds: float = 3600.0
    # Another loop settles a decision left unsettled this long past its time.
    adopt_after_seconds: float = 30.0


@dataclass
class Workers:
    """The worker slots the loop may set: what each runs with no control state,
    and the most it may give."""

    base_slots: int = 2
    max_slots: int = 4


@dataclass
class StepReport:
    settled: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)
    decided: list[DecisionRecord] = field(default_factory=list)
    limited: int = 0  # plans not made: the action rate limit was reached


class Executor:
    def __init__(
        self,
        store: Store,
        planner: Planner,
        actuators: Actuators,
        *,
        observer: str,
        safety: Safety | None = None,
        aliases: Callable[[], dict[str, list[str]]] = dict,
        workers: Workers | None = None,
        audit: AuditLog | None = None,
        prune_older_than: float | None = None,
    ) -> None:
        """`aliases()`: each model alias and its deployments (for preconditions).
        `prune_older_than`: under disk pressure, the checkpoints of runs finished
        this long ago may be pruned (None: never)."""
        self.store = store
        self.planner = planner
        self.actuators = actuators
        self.observer = observer
        self.safety = safety or Safety()
        self.aliases = aliases
        self.workers = workers or Workers()
        self.audit = audit
        self.prune_older_than = prune_older_than
        # (kind, subject) -> since when this loop has seen it clear, or holding,
        # without a break.
        self._clear_since: dict[tuple[str, str], float] = {}
        self._held_since: dict[tuple[str, str], float] = {}

    def step(self, analysis: Analysis, now: float) -> StepReport:
        report = StepReport()
        holding = {problem(d.kind, d.subject) for d in analysis.diagnoses}
        for key in list(self._clear_since):
            if key in holding:
                del self._clear_since[key]
        self._held_since = {key: self._held_since.get(key, now) for key in holding}
        since = now - self.safety.in_force_seconds
        in_force = self.store.list_decisions(statuses=IN_FORCE, since=since, limit=1000)
        blocked = set()
        for decision in sorted(in_force, key=lambda d: (d.at, d.kind, d.subject, d.id),
                               reverse=True):
            key = problem(decision.kind, decision.subject)
            if key not in holding:
                self._clear_since.setdefault(key, now)
            if decision.observer == self.observer or self._orphaned(decision, now):
                decision = self._tend(decision, key in holding, now, report)
            if decision.status in IN_FORCE and not self._outgrown(decision, now):
                blocked.add(key)
        known = {problem(d.kind, d.subject) for d in in_force}
        self._clear_since = {key: at for key, at in self._clear_since.items() if key in known}
        if not analysis.diagnoses:
            return report
        situation: Situation | None = None
        taken: int | None = None
        for diagnosis in analysis.diagnoses:
            if problem(diagnosis.kind, diagnosis.subject) in blocked:
                continue
            if taken is None:
                taken = self.store.count_decisions(since=now - 60.0)
            if taken >= self.safety.max_actions_per_minute:
                report.limited += 1
                continue
            situation = situation or self._situation(now)
            plan = self.planner.plan(diagnosis, situation,
                                     self.store.decision_tally(diagnosis.kind))
            if plan is None:
                continue
            report.decided.append(self._decide(plan, now))
            taken += 1
            situation = None  # the action may have changed what preconditions see
        return report

    # --- decisions in force ---------------------------------------------------
    def _tend(self, decision: DecisionRecord, holds: bool, now: float,
              report: StepReport) -> DecisionRecord:
        """Settle, undo, execute or expire the decision as its time and its
        diagnosis say; the decision as it is then."""
        if decision.status == "awaiting_approval":
            if not holds:
                return self._move(decision, ("awaiting_approval",), now,
                                  status="expired") or decision
            return decision
        if decision.status == "approved":
            if not holds:
                return self._move(decision, ("approved",), now, status="expired") or decision
            return self._execute(decision, ("approved",), now) or decision
        if decision.status == "executing":  # another step of this loop is applying it
            return decision
        if decision.outcome is None:
            if now < decision.settle_at:
                return decision
            outcome = "persisted" if holds else "cleared"
            decision = self._move(decision, (decision.status,), now, outcome=outcome,
                                  settled_at=now) or decision
            report.settled.append(decision.id)
            if outcome == "persisted":  # it did not help: undo it, let Plan choose again
                return self._end(decision, now, report)
            return decision
        clear_since = self._clear_since.get(problem(decision.kind, decision.subject))
        if not holds and clear_since is not None and (
                now - clear_since >= self.safety.hold_seconds):
            return self._end(decision, now, report)
        return decision

    def _orphaned(self, decision: DecisionRecord, now: float) -> bool:
        """Another loop's decision that loop never settled (its process stopped)."""
        return (decision.outcome is None and decision.status in ("executed", "dry_run")
                and now >= decision.settle_at + self.safety.adopt_after_seconds)

    def _outgrown(self, decision: DecisionRecord, now: float) -> bool:
        """An action that worked, whose diagnosis came back and has held for a
        settle window: it stays in force, but no longer stops another."""
        held_since = self._held_since.get(problem(decision.kind, decision.subject))
        return (decision.outcome == "cleared" and held_since is not None
                and held_since > (decision.settled_at or decision.at)
                and now - held_since >= self.safety.settle_seconds)

    def _end(self, decision: DecisionRecord, now: float, report: StepReport
             ) -> DecisionRecord:
        if decision.status == "dry_run":
            return self._move(decision, ("dry_run",), now, status="dry_run_done") or decision
        kind = ACTIONS[decision.action]
        if not kind.reversible:
            return self._move(decision, ("executed",), now, status="done") or decision
        undone = self.actuators.revert(decision.action, decision.params, now=now)
        ended = self._move(decision, ("executed",), now, status="reverted")
        if ended is None:
            return decision
        report.reverted.append(decision.id)
        self._audit("autonomic.revert", decision, {"undone": undone})
        return ended

    # --- new decisions --------------------------------------------------------
    def _decide(self, plan: Plan, now: float) -> DecisionRecord:
        safety = self.safety
        if safety.mode == "dry-run":
            status = "dry_run"
        elif safety.mode == "approval" and plan.risk >= safety.risky:
            status = "awaiting_approval"
        else:
            status = "approved"
        decision = DecisionRecord(
            id=new_id("dec", now), at=now, observer=self.observer, kind=plan.kind,
            subject=plan.subject, action=plan.action, params=plan.params, status=status,
            explanation={**plan.explanation, "mode": safety.mode},
            settle_at=now + safety.settle_seconds, updated_at=now,
            approved_by="autonomic" if status == "approved" else None)
        self.store.put_decision(decision)
        log.info("autonomic decision", decision=decision.id, kind=plan.kind,
                 subject=plan.subject, action=plan.action, status=status)
        if status == "approved":
            return self._execute(decision, ("approved",), now) or decision
        return decision

    def _execute(self, decision: DecisionRecord, from_status: Sequence[str], now: float
                 ) -> DecisionRecord | None:
        # Claim it first, so two loops never both run an approved decision.
        claimed = self._move(decision, from_status, now, status="executing",
                             settle_at=now + self.safety.settle_seconds)
        if claimed is None:
            return None
        try:
            changed = self.actuators.apply(decision.action, decision.params,
                                           decision_id=decision.id, now=now)
        except Exception as error:  # a precondition no longer holds, or the store failed
            log.warning("autonomic action failed", decision=decision.id,
                        action=decision.action, error=f"{type(error).__name__}: {error}")
            return self._move(decision, ("executing",), now, status="failed",
                              error=f"{type(error).__name__}: {error}")
        done = self._move(decision, ("executing",), now, status="executed")
        self._audit("autonomic.action", decision, {"changed": changed})
        return done

    # --- helpers --------------------------------------------------------------
    def _move(self, decision: DecisionRecord, from_status: Sequence[str], now: float,
              **changes: Any) -> DecisionRecord | None:
        return self.store.update_decision(decision.id, from_status=from_status, now=now,
                                          **changes)

    def _situation(self, now: float) -> Situation:
        control = {entry.key: entry.value for entry in self.store.list_control(now=now)}
        held_open, factors = set(), {}
        shed, paused, quarantined, recycling = set(), set(), set(), set()
        for key, value in control.items():
            kind, _, rest = key.partition("/")
            if kind == "breaker" and value.get("state") == "open":
                held_open.add(rest)
            elif kind == "weight":
                alias, _, deployment = rest.partition("/")
                factors[(alias, deployment)] = float(value.get("factor", 1.0))
            elif kind == "shed":
                shed.add(rest)
            elif kind == "pause":
                paused.add(rest)
            elif kind == "quarantine":
                quarantined.add(rest)
            elif kind == "recycle":
                recycling.add(rest)
        slots = control.get(CONCURRENCY_KEY, {}).get("slots", self.workers.base_slots)
        kept = supervised_pids(control)
        supervised = ({row.id for row in self.store.list_workers() if (row.host, row.pid) in kept}
                      if kept else set())
        return Situation(
            aliases=self.aliases(), held_open=held_open, weight_factors=factors,
            slots=int(slots), base_slots=self.workers.base_slots,
            max_slots=self.workers.max_slots, shed=shed, paused=paused,
            quarantined=quarantined, agent_versions=self._agent_versions,
            max_step=self.safety.max_step, supervised=supervised, recycling=recycling,
            prune_older_than=self.prune_older_than, prunable=self._prunable, now=now)

    def _prunable(self, finished_before: float) -> tuple[int, int, int]:
        would = self.store.prune_checkpoints(finished_before=finished_before, dry_run=True)
        return would.runs, would.checkpoints, would.bytes

    def _agent_versions(self, tenant: str, agent: str) -> tuple[str | None, str | None]:
        record = self.store.get_agent(tenant, agent)
        if record is None or record.version is None:
            return None, None
        version = self.store.get_agent_version(tenant, agent, record.version)
        return record.version, None if version is None else version.parent

    def _audit(self, kind: str, decision: DecisionRecord, details: dict[str, Any]) -> None:
        if self.audit is None:
            return
        tenant = SYSTEM_TENANT
        if decision.kind in TENANT_DIAGNOSES:
            tenant = decision.subject.split("/", 1)[0] or SYSTEM_TENANT
        try:
            with self.store.atomic():
                self.audit.record(tenant, Event(
                    kind, f"autonomic:{self.observer}", decision.id,
                    {"diagnosis": decision.kind, "subject": decision.subject,
                     "action": decision.action, "params": decision.params, **details}))
        except Exception as error:  # the action is done; losing its audit entry is logged
            log.error("could not audit an autonomic action", decision=decision.id,
                      error=f"{type(error).__name__}: {error}")
