"""`homeo autonomic status` through typer's CliRunner against a real SQLite
file: a dead worker's row and a flooded queue, observed once with --observe."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from homeo.backends import open_backends
from homeo.store.models import WorkerRecord
from tests.support.clikit import homeo, no_homeo_env  # noqa: F401


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A worker that last beat 10 minutes ago; 40 jobs due for flood, 2 for calm."""
    folder = tmp_path / "data"
    folder.mkdir()
    backends = open_backends(f"sqlite:///{folder / 'homeo.db'}")
    now = time.time()
    try:
        backends.store.beat_worker(WorkerRecord(id="box:42:abc", host="box", pid=42, slots=4,
                                                in_use=1, started_at=now - 900,
                                                last_seen=now - 600))
        for tenant, count in (("flood", 40), ("calm", 2)):
            for index in range(count):
                backends.queue.enqueue(tenant, "run", {"n": index}, now=now - 5)
    finally:
        backends.close()
    return folder


def test_status_without_a_loop_says_how_to_start_one(data: Path) -> None:
    result = homeo("autonomic", "status", "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    assert "no autonomic loop is running on this database" in result.output
    assert "HOMEO_AUTONOMIC=on" in result.output and "Diagnoses holding: none" in result.output


def test_status_observe_shows_signals_and_diagnoses_with_evidence(data: Path) -> None:
    result = homeo("autonomic", "status", "--observe", "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    assert "Diagnoses holding: 2" in result.output
    assert "worker_dead box:42:abc (confidence 0.85" in result.output
    assert "worker.heartbeat_age_seconds[box:42:abc] = 6" in result.output  # 600 and more
    assert "tenant_flooding flood" in result.output and "40 of the 42 due jobs" in result.output
    assert "queue.due_by_tenant" in result.output

    # Kept in the store: a later status (without --observe) shows the same, here as JSON.
    found = json.loads(homeo("autonomic", "status", "--json", "--data-dir", str(data)).output)
    assert sorted((d["kind"], d["subject"]) for d in found["diagnoses"]) == [
        ("tenant_flooding", "flood"), ("worker_dead", "box:42:abc")]
    assert found["loop"] == "off"
    calm = json.loads(homeo("autonomic", "status", "--json", "--tenant", "calm",
                            "--data-dir", str(data)).output)
    assert [d["kind"] for d in calm["diagnoses"]] == ["worker_dead"]
    assert {s["subject"] for s in calm["signals"] if s["name"] == "queue.due_by_tenant"} == {
        "calm"}
    assert found["decisions"] == []  # --observe plans nothing


def test_status_shows_decisions_and_approve_lets_a_waiting_one_run(data: Path) -> None:
    import random

    from homeo.autonomic.actuators import Actuators
    from homeo.autonomic.analyze import Analysis, Diagnosis
    from homeo.autonomic.execute import Executor, Safety
    from homeo.autonomic.plan import Planner

    backends = open_backends(f"sqlite:///{data / 'homeo.db'}")
    now = time.time()
    try:
        loop = Executor(backends.store, Planner(random.Random(3)),
                        Actuators(backends.store, backends.queue, actor="autonomic:loop1"),
                        observer="loop1",
                        safety=Safety(mode="approval"))
        poison = Diagnosis("poison_job", "flood/job_1", 0.9, "job_1: its worker died 3 times")
        (waiting,) = loop.step(Analysis(now, [], [poison]), now).decided
    finally:
        backends.close()
    assert waiting.status == "awaiting_approval"

    shown = homeo("autonomic", "status", "--data-dir", str(data))
    assert shown.exit_code == 0, shown.output
    assert "Recent decisions (HOMEO_AUTONOMIC_ACT=dry-run):" in shown.output
    assert re.search(rf"{waiting.id} \d+s ago: quarantine_job for poison_job flood/job_1"
                     r" \[awaiting_approval\]", shown.output), shown.output
    assert "why: quarantine_job scored highest" in shown.output
    assert f"approve with: homeo autonomic approve {waiting.id}" in shown.output

    approved = homeo("autonomic", "approve", waiting.id, "--data-dir", str(data))
    assert approved.exit_code == 0, approved.output
    assert f"approved {waiting.id}: quarantine_job for poison_job flood/job_1" in approved.output
    again = homeo("autonomic", "approve", waiting.id, "--data-dir", str(data))
    assert again.exit_code == 1
    assert f"decision {waiting.id} is approved, not awaiting approval" in again.output
    missing = homeo("autonomic", "approve", "dec_nope", "--data-dir", str(data))
    assert missing.exit_code == 1 and "no decision dec_nope" in missing.output


def decision_awaiting_approval(data: Path):  # noqa: ANN201 (a DecisionRecord)
    """A loop in approval mode decides to quarantine a poison job: it waits."""
    import random

    from homeo.autonomic.actuators import Actuators
    from homeo.autonomic.analyze import Analysis, Diagnosis
    from homeo.autonomic.execute import Executor, Safety
    from homeo.autonomic.plan import Planner

    backends = open_backends(f"sqlite:///{data / 'homeo.db'}")
    now = time.time()
    try:
        loop = Executor(backends.store, Planner(random.Random(3)),
                        Actuators(backends.store, backends.queue, actor="autonomic:loop1"),
                        observer="loop1", safety=Safety(mode="approval"))
        poison = Diagnosis("poison_job", "flood/job_1", 0.9, "job_1: its worker died 3 times")
        (waiting,) = loop.step(Analysis(now, [], [poison]), now).decided
    finally:
        backends.close()
    return waiting


def test_approve_json_prints_the_decision_as_the_api_does(data: Path) -> None:
    waiting = decision_awaiting_approval(data)
    approved = homeo("autonomic", "approve", waiting.id, "--data-dir", str(data), "--json")
    assert approved.exit_code == 0, approved.output
    decision = json.loads(approved.stdout)
    assert (decision["id"], decision["status"]) == (waiting.id, "approved")
    assert (decision["action"], decision["approved_by"]) == ("quarantine_job", "cli")
    again = homeo("autonomic", "approve", waiting.id, "--data-dir", str(data), "--json")
    assert again.exit_code == 1
    refusal = json.loads(again.stdout)
    assert refusal["exit_code"] == 1 and "is approved, not awaiting approval" in refusal["error"]
