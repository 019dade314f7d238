"""The autonomic loop's decisions over real HTTP: a loop running in the app
(HOMEO_AUTONOMIC_ACT=on) finds a tenant flooding the queue, sheds it (its
submissions get 429), audits the action and explains it at
GET /v1/autonomic/decisions; approving a waiting decision through
POST /v1/autonomic/decisions/{id}/approve, within the caller's tenant."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from homeo.audit import generate_key
from homeo.autonomic.actuators import Actuators
from homeo.autonomic.analyze import Analysis, Diagnosis
from homeo.autonomic.execute import Executor, Safety
from homeo.autonomic.plan import Planner
from homeo.store.models import DecisionRecord
from tests.api.conftest import Served, add_key

DEADLINE_SECONDS = 60.0


def test_the_loop_sheds_a_flooding_tenant_and_explains_why(serve: Any, tmp_path: Path) -> None:
    audit_key = tmp_path / "keys" / "audit.key"
    generate_key(audit_key)
    served = serve(with_worker=False, autonomic="on", autonomic_act="on", autonomic_seed=7,
                   autonomic_interval_seconds=0.05, control_refresh_seconds=0.05,
                   audit_key_file=audit_key)
    flood = served.client_for(add_key(served, "flood", role="admin"))
    queue = served.runtime.backends.queue
    # Plan samples; shedding worked for floods 50 times before (two hours ago,
    # another tenant), so it all but always ranks above pausing (about 4 in 10
    # times from no history).
    for n in range(50):
        served.runtime.backends.store.put_decision(DecisionRecord(
            id=f"dec_past{n}", at=time.time() - 7200, observer="past", kind="tenant_flooding",
            subject="old", action="shed_tenant", status="reverted", settle_at=0.0,
            outcome="cleared", settled_at=0.0))
    for index in range(40):
        queue.enqueue("flood", "run", {"n": index})
    queue.enqueue("calm", "run", {"n": 0})

    deadline = time.monotonic() + DEADLINE_SECONDS
    while (answer := flood.post("/v1/runs", json={"agent": "echo", "input": "more"})
           ).status_code != 429:
        assert answer.status_code == 202, answer.text
        assert time.monotonic() < deadline, "the flooding tenant was never shed"
        time.sleep(0.05)
    assert answer.headers["retry-after"] == "30"
    # Another tenant still submits.
    assert served.client.post("/v1/runs", json={"agent": "echo", "input": "x"}
                              ).status_code == 202

    # Decisions about a tenant are shown to that tenant only.
    assert [d for d in served.client.get("/v1/autonomic/decisions").json()["decisions"]
            if d["kind"] == "tenant_flooding"] == []
    listed = flood.get("/v1/autonomic/decisions").json()
    assert listed["act"] == "on"
    (decision,) = [d for d in listed["decisions"] if d["kind"] == "tenant_flooding"]
    assert (decision["subject"], decision["action"], decision["status"]) == (
        "flood", "shed_tenant", "executed")
    explanation = decision["explanation"]
    assert explanation["diagnosis"]["summary"].startswith("tenant flood: ")
    assert {e["signal"] for e in explanation["signals"]} == {"queue.due_by_tenant"}
    assert [a["action"] for a in explanation["alternatives"]] == ["shed_tenant", "pause_tenant"]
    assert explanation["why"].startswith("shed_tenant scored highest")
    (entry,) = served.runtime.backends.store.list_audit("flood", kind="autonomic.action")
    assert entry.subject == decision["id"] and entry.details["action"] == "shed_tenant"
    # GET /v1/autonomic shows the decisions too.
    assert decision["id"] in {d["id"] for d in flood.get("/v1/autonomic").json()["decisions"]}


def waiting_decisions(served: Served) -> dict[str, str]:
    """Decisions waiting for approval about a job of default's and one of acme's."""
    store = served.runtime.backends.store
    actuators = Actuators(store, served.runtime.backends.queue, actor="autonomic:t")
    loop = Executor(store, Planner(random.Random(5)), actuators, observer="elsewhere",
                    safety=Safety(mode="approval"))
    now = time.time()
    report = loop.step(Analysis(now, [], [
        Diagnosis("poison_job", "default/job_1", 0.9, "job_1 kills workers"),
        Diagnosis("poison_job", "acme/job_2", 0.9, "job_2 kills workers")]), now)
    return {d.subject.split("/")[0]: d.id for d in report.decided}


def test_operators_approve_their_tenants_decisions(served: Served) -> None:
    ids = waiting_decisions(served)
    operator = served.client_for(add_key(served, "default", role="operator"))
    listed = operator.get("/v1/autonomic/decisions",
                          params={"status": "awaiting_approval"}).json()["decisions"]
    assert [d["id"] for d in listed] == [ids["default"]]  # not acme's

    refused = served.client_for(add_key(served, "default")).post(
        f"/v1/autonomic/decisions/{ids['default']}/approve")
    assert refused.status_code == 403
    other = operator.post(f"/v1/autonomic/decisions/{ids['acme']}/approve")
    assert other.status_code == 404 and "no decision" in other.json()["error"]["message"]

    approved = operator.post(f"/v1/autonomic/decisions/{ids['default']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["approved_by"].startswith("key:")
    again = operator.post(f"/v1/autonomic/decisions/{ids['default']}/approve")
    assert again.status_code == 409
    assert "is approved, not awaiting approval" in again.json()["error"]["message"]
    assert served.runtime.backends.store.get_decision(ids["acme"]).status == "awaiting_approval"
