"""Approving a decision that waits (HOMEO_AUTONOMIC_ACT=approval): the
decision moves to `approved`, and the loop that made it acts on its next step.
Shared by `homeo autonomic approve` and POST /v1/autonomic/decisions/{id}/approve."""

from __future__ import annotations

from homeo.autonomic.analyze import TENANT_DIAGNOSES
from homeo.store.base import Store
from homeo.store.models import DecisionRecord


class ApprovalRefused(Exception):
    """The decision cannot be approved; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def approve(store: Store, decision_id: str, *, by: str, now: float,
            tenant_id: str | None = None) -> DecisionRecord:
    """Approve the decision; with `tenant_id`, one about another tenant is
    treated as missing."""
    decision = store.get_decision(decision_id)
    if decision is None or (tenant_id is not None and decision.kind in TENANT_DIAGNOSES
                            and decision.subject.split("/", 1)[0] != tenant_id):
        raise ApprovalRefused(f"no decision {decision_id}; `homeo autonomic status` or GET"
                              " /v1/autonomic/decisions lists them", 404)
    approved = store.update_decision(decision_id, from_status=("awaiting_approval",),
                                     now=now, status="approved", approved_by=by)
    if approved is None:
        current = store.get_decision(decision_id)
        state = current.status if current is not None else "gone"
        raise ApprovalRefused(f"decision {decision_id} is {state}, not awaiting approval;"
                              " only decisions made with HOMEO_AUTONOMIC_ACT=approval wait",
                              409)
    return approved
