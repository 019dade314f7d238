"""The autonomic loop: Monitor, Analyze, Plan and Execute (execute.py), and
Knowledge (what it found and did, kept in the store so every process and
`homeo autonomic status` / GET /v1/autonomic see it).

Every `interval_seconds` the loop observes and analyzes. Diagnoses are noted
every time (one row per diagnosis while it holds, cleared when it stops
holding, dropped `keep_diagnoses_seconds` after that); signals are kept
every `record_every_seconds` and dropped after `keep_signals_seconds`, so
the store holds a bounded amount. With an `executor`, each step then plans
and acts on the diagnoses (execute.py says how, and within which limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from homeo.autonomic.analyze import TENANT_DIAGNOSES, Analysis, Analyzer
from homeo.autonomic.execute import Executor, StepReport
from homeo.autonomic.monitor import TENANT_SIGNALS, Monitor
from homeo.observe import logs
from homeo.store.base import Store
from homeo.store.models import DecisionRecord, DiagnosisRecord, SignalRecord

log = logs.get_logger("homeo.autonomic")


class AutonomicLoop:
    def __init__(
        self,
        monitor: Monitor,
        analyzer: Analyzer,
        store: Store,
        *,
        observer: str,
        interval_seconds: float = 1.0,
        record_every_seconds: float = 5.0,
        keep_signals_seconds: float = 900.0,
        keep_diagnoses_seconds: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
    ) -> None:
        """`observer` names this process in the signals it keeps. Without an
        `executor` the loop only observes and diagnoses."""
        self.monitor = monitor
        self.analyzer = analyzer
        self.store = store
        self.observer = observer
        self.interval_seconds = interval_seconds
        self.record_every_seconds = record_every_seconds
        self.keep_signals_seconds = keep_signals_seconds
        self.keep_diagnoses_seconds = keep_diagnoses_seconds
        self.clock = clock
        self.executor = executor
        self.last: Analysis | None = None
        self.last_report: StepReport | None = None
        self._recorded_at = float("-inf")

    def step(self, now: float | None = None) -> Analysis:
        """Observe, analyze and keep what was found, at `now`."""
        now = self.clock() if now is None else now
        seen = self.monitor.observe(now)
        analysis = self.analyzer.analyze(seen)
        if now - self._recorded_at >= self.record_every_seconds:
            self.store.put_signals(
                [SignalRecord(observer=self.observer, at=now, name=signal.name,
                              subject=signal.subject, value=signal.value)
                 for signal in seen.signals],
                keep_after=now - self.keep_signals_seconds,
            )
            self._recorded_at = now
        self.store.note_diagnoses(
            [DiagnosisRecord(kind=d.kind, subject=d.subject, confidence=d.confidence,
                             summary=d.summary, evidence=d.evidence)
             for d in analysis.diagnoses],
            now=now, keep_after=now - self.keep_diagnoses_seconds,
        )
        if self.executor is not None:
            self.last_report = self.executor.step(analysis, now)
        self.last = analysis
        return analysis

    async def run(self, stop: asyncio.Event) -> None:
        """Step every interval until `stop` is set; a failed step is logged."""
        log.info("autonomic loop started", observer=self.observer,
                 interval_seconds=self.interval_seconds)
        while not stop.is_set():
            try:
                analysis = await asyncio.to_thread(self.step)
            except Exception as error:  # the database is down: the next step tries again
                log.warning("autonomic step failed", error=f"{type(error).__name__}: {error}")
            else:
                for diagnosis in analysis.diagnoses:
                    log.debug("diagnosis", kind=diagnosis.kind, subject=diagnosis.subject,
                              confidence=diagnosis.confidence, summary=diagnosis.summary)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_seconds)


def status(
    store: Store,
    *,
    now: float,
    tenant_id: str | None = None,
    fresh_seconds: float = 60.0,
    cleared: int = 20,
    decisions: int = 20,
) -> dict[str, Any]:
    """What the loops found, from the store: each observer's newest signals
    (made in the last `fresh_seconds`), the diagnoses that hold, and the last
    `cleared` ones that stopped holding, and the last `decisions` decisions.
    With `tenant_id`, what belongs to other tenants (their agents, jobs,
    queue share, and the decisions about them) is left out."""
    signals = [s for s in store.latest_signals(since=now - fresh_seconds)
               if tenant_id is None or s.name not in TENANT_SIGNALS
               or _belongs(s.subject, tenant_id)]
    recent = store.list_diagnoses(limit=500)
    shown = [d for d in recent if tenant_id is None or d.kind not in TENANT_DIAGNOSES
             or _belongs(d.subject, tenant_id)]
    return {
        "at": now,
        "tenant": tenant_id,
        "signals": [s.model_dump() for s in signals],
        "diagnoses": [d.model_dump() for d in shown if d.cleared_at is None],
        "cleared": [d.model_dump() for d in shown if d.cleared_at is not None][:cleared],
        "decisions": [d.model_dump() for d in list_decisions(store, tenant_id=tenant_id,
                                                             limit=decisions)],
    }


def list_decisions(store: Store, *, tenant_id: str | None = None, status: str | None = None,
                   limit: int = 50) -> list[DecisionRecord]:
    """The newest decisions; with `tenant_id`, none about another tenant."""
    found = store.list_decisions(statuses=None if status is None else [status],
                                 limit=limit if tenant_id is None else 10 * limit)
    return [d for d in found if tenant_id is None or d.kind not in TENANT_DIAGNOSES
            or _belongs(d.subject, tenant_id)][:limit]


def _belongs(subject: str, tenant_id: str) -> bool:
    return subject == tenant_id or subject.startswith(f"{tenant_id}/")
