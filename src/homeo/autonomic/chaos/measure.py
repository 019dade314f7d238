"""What a chaos run measured, from the runs it submitted and the decisions made.

A run meets the SLO when it succeeded within `latency_seconds` of being
submitted. One that did not is overdue from that deadline (or its failure)
until it ended (or for good, if it never did), and the SLO is broken while any run is
overdue. So the time from the fault to SLO restored is how long after the
fault the last overdue run ended: 0 when no run was overdue after the fault
(the SLO never broke), None when one never ended (not restored). A
submission the store refused missed the SLO, and ended when it was refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

FINAL = frozenset({"succeeded", "failed", "cancelled"})
# A submission the store refused (its disk below the free-disk floor): never
# accepted, so never lost, but it did not meet the SLO.
REFUSED = "refused"
# Decisions whose action ran (an action undone or done ran too).
ACTED = frozenset({"executed", "reverted", "done"})


@dataclass(frozen=True)
class Slo:
    latency_seconds: float = 5.0


@dataclass(frozen=True)
class RunOutcome:
    submitted_at: float
    status: str
    finished_at: float | None

    def meets(self, slo: Slo) -> bool:
        return (self.status == "succeeded" and self.finished_at is not None
                and self.finished_at - self.submitted_at <= slo.latency_seconds)


@dataclass
class ModeResult:
    loop: str  # "on" or "off"
    submitted: int
    succeeded: int
    lost: int  # accepted, never final
    slo_broken: bool
    recovery_seconds: float | None
    p95_latency_seconds: float | None
    max_latency_seconds: float | None
    missed_slo: int  # runs that did not meet the SLO
    refused: int = 0  # submissions refused (HTTP 507: the disk below its floor)
    oom_kills: int = 0  # worker processes the kernel's OOM killer ended
    actions: dict[str, int] = field(default_factory=dict)
    faulty_calls: int = 0  # calls the flaky deployment got after the fault
    steady_calls: int = 0  # and the steady one
    # Runs the fault itself submitted (tenant-flood's, the poison job), by status
    # when the steady runs had ended: "missing" is a run the store lost.
    others: dict[str, int] = field(default_factory=dict)

    @property
    def others_lost(self) -> int:
        return self.others.get("missing", 0)

    @property
    def faulty_share(self) -> float | None:
        """The share of the calls after the fault that went to the flaky deployment."""
        calls = self.faulty_calls + self.steady_calls
        return round(self.faulty_calls / calls, 3) if calls else None

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.submitted if self.submitted else 0.0

    def as_json(self) -> dict[str, Any]:
        return {"loop": self.loop, "submitted": self.submitted, "succeeded": self.succeeded,
                "success_rate": round(self.success_rate, 4), "lost": self.lost,
                "refused": self.refused, "oom_kills": self.oom_kills,
                "slo_broken": self.slo_broken, "recovery_seconds": self.recovery_seconds,
                "p95_latency_seconds": self.p95_latency_seconds,
                "max_latency_seconds": self.max_latency_seconds, "missed_slo": self.missed_slo,
                "actions": dict(self.actions), "actions_taken": sum(self.actions.values()),
                "faulty_calls": self.faulty_calls, "steady_calls": self.steady_calls,
                "faulty_share": self.faulty_share, "other_tenant_runs": dict(self.others)}


def recovery(runs: list[RunOutcome], fault_at: float, slo: Slo) -> tuple[bool, float | None]:
    """(was a run overdue after the fault, seconds from the fault to SLO restored)."""
    restored = fault_at
    for run in runs:
        if run.meets(slo):
            continue
        if run.finished_at is None:
            return True, None
        if run.finished_at > fault_at:  # overdue after the fault, until it ended
            restored = max(restored, run.finished_at)
    return restored > fault_at, round(restored - fault_at, 2)


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2)


def summarize(loop: str, runs: list[RunOutcome], fault_at: float, slo: Slo,
              decisions: list[tuple[str, str]], faulty_calls: int,
              steady_calls: int = 0, others: Sequence[str | None] = (),
              oom_kills: int = 0) -> ModeResult:
    """`decisions`: (action, status) of each decision made during the run;
    `others`: the status of each run the fault itself submitted (None: not
    in the store)."""
    broken, recovered = recovery(runs, fault_at, slo)
    latencies = [run.finished_at - run.submitted_at for run in runs
                 if run.finished_at is not None and run.status != REFUSED]
    return ModeResult(
        loop=loop, submitted=len(runs),
        succeeded=sum(1 for run in runs if run.status == "succeeded"),
        lost=sum(1 for run in runs if run.status not in FINAL and run.status != REFUSED),
        refused=sum(1 for run in runs if run.status == REFUSED), oom_kills=oom_kills,
        slo_broken=broken, recovery_seconds=recovered,
        p95_latency_seconds=p95(latencies),
        max_latency_seconds=round(max(latencies), 2) if latencies else None,
        missed_slo=sum(1 for run in runs if not run.meets(slo)),
        actions=dict(Counter(action for action, status in decisions if status in ACTED)),
        faulty_calls=faulty_calls, steady_calls=steady_calls,
        others=dict(Counter(status or "missing" for status in others)))


def table(scenario: str, results: list[ModeResult]) -> str:
    """The comparison, one column per loop mode, as Markdown."""
    def recovered(result: ModeResult) -> str:
        if not result.slo_broken:
            return "never broke"
        return "not restored" if result.recovery_seconds is None else f"{result.recovery_seconds} s"

    rows = [
        ("runs submitted", lambda r: str(r.submitted)),
        ("success rate", lambda r: f"{100 * r.success_rate:.1f}%"),
        ("runs lost", lambda r: str(r.lost)),
        ("runs that missed the SLO", lambda r: str(r.missed_slo)),
        ("fault to SLO restored", recovered),
        ("P95 run latency", lambda r: "-" if r.p95_latency_seconds is None
         else f"{r.p95_latency_seconds} s"),
        ("slowest run", lambda r: "-" if r.max_latency_seconds is None
         else f"{r.max_latency_seconds} s"),
        ("calls to flaky after the fault", lambda r: str(r.faulty_calls)),
        ("share of calls to flaky after it", lambda r: "-" if r.faulty_share is None
         else f"{100 * r.faulty_share:.0f}%"),
        ("actions taken", lambda r: ", ".join(f"{a} x{n}" for a, n in sorted(r.actions.items()))
         or "0"),
    ]
    if any(r.refused for r in results):
        rows.insert(3, ("submissions refused (disk below its floor)", lambda r: str(r.refused)))
    if any(r.oom_kills for r in results):
        rows.append(("worker processes killed for memory (OOM)", lambda r: str(r.oom_kills)))
    if any(r.others for r in results):
        rows.append(("the fault's own runs, by status at the end",
                     lambda r: ", ".join(f"{status} {n}" for status, n in sorted(r.others.items()))
                     or "-"))
    lines = [f"| {scenario} | " + " | ".join(f"loop {r.loop}" for r in results) + " |",
             "|---|" + "---|" * len(results)]
    lines += [f"| {label} | " + " | ".join(cell(r) for r in results) + " |"
              for label, cell in rows]
    return "\n".join(lines)
