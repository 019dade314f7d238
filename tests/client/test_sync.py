"""`Homeo` against a live server: every resource, paging, waiting, events,
approvals, forks, keys, and the API's errors as types."""

from __future__ import annotations

import pytest

from homeo.client import (
    Conflict,
    EndEvent,
    Forbidden,
    Homeo,
    InvalidRequest,
    NotFound,
    RunEvent,
    Step,
    StepEvent,
    Unauthorized,
    WaitingEvent,
    WaitTimeout,
)
from tests.api.conftest import Served, add_key

DEADLINE = 60.0


def test_a_run_is_submitted_waited_for_and_read(homeo: Homeo) -> None:
    accepted = homeo.runs.submit("calc", "6*7")
    assert accepted.status == "queued"
    run = homeo.runs.wait(accepted.id, DEADLINE)
    assert run.status == "succeeded" and run.output == "6*7 = 42" and run.final
    assert run.idempotency_key.startswith("sdk-")  # made by the SDK: its retries are safe
    assert [step.kind for step in run.steps] == ["model", "tool", "model"]
    assert all(isinstance(step, Step) for step in run.steps)
    assert run.usage["input_tokens"] >= 0 and run.created_at is not None

    state = homeo.runs.step(run.id, 1)
    assert state.step.name == "calculate" and state.step.output is not None
    assert state.run_id == run.id and state.state is not None

    again = homeo.runs.submit("calc", "6*7", idempotency_key=run.idempotency_key)
    assert again.id == run.id
    with pytest.raises(Conflict) as refused:
        homeo.runs.submit("calc", "1+1", idempotency_key=run.idempotency_key)
    assert run.idempotency_key in refused.value.message


def test_runs_are_listed_a_page_at_a_time(homeo: Homeo) -> None:
    made = [homeo.runs.submit("echo", f"hello {n}").id for n in range(5)]
    for run_id in made:
        homeo.runs.wait(run_id, DEADLINE)
    listed = [run.id for run in homeo.runs.list(page_size=2)]
    assert listed == made[::-1]
    page = homeo.runs.page(limit=2)
    assert len(page.runs) == 2 and page.next_before == made[-2]
    assert [r.id for r in homeo.runs.list(agent="calc")] == []
    assert {r.status for r in homeo.runs.list(status="succeeded")} == {"succeeded"}


def test_events_stream_as_typed_events(homeo: Homeo) -> None:
    run_id = homeo.runs.submit("calc", "2+3").id
    events = list(homeo.runs.events(run_id))
    assert isinstance(events[-1], EndEvent) and events[-1].status == "succeeded"
    steps = [e.step for e in events if isinstance(e, StepEvent)]
    assert {s.seq for s in steps} == {0, 1, 2}
    statuses = [e.run.status for e in events if isinstance(e, RunEvent)]
    assert statuses[-1] == "succeeded"


def test_a_waiting_run_is_approved_rejected_or_answered(homeo: Homeo) -> None:
    paid = homeo.runs.submit("payer", "700").id
    run = homeo.runs.wait(paid, DEADLINE)  # returns: a person must act
    assert run.status == "waiting" and run.waiting_for["kind"] == "approval"
    waiting = next(e for e in homeo.runs.events(paid) if isinstance(e, WaitingEvent))
    assert waiting.waiting_for == run.waiting_for
    with pytest.raises(Conflict) as refused:
        homeo.runs.input(paid, "yes")
    assert "waits for approval" in refused.value.message and refused.value.request_id
    assert homeo.runs.approve(paid, comment="fine", arguments={"amount": 70}).status == "queued"
    assert "wired 70 EUR" in homeo.runs.wait(paid, DEADLINE).output

    refused_run = homeo.runs.submit("payer", "9").id
    homeo.runs.wait(refused_run, DEADLINE)
    homeo.runs.reject(refused_run, comment="no")
    assert homeo.runs.wait(refused_run, DEADLINE).final

    greeted = homeo.runs.submit("greeter", "hi").id
    asked = homeo.runs.wait(greeted, DEADLINE)
    assert asked.waiting_for["kind"] == "input"
    homeo.runs.input(greeted, "Ada")
    assert homeo.runs.wait(greeted, DEADLINE).output == "hello Ada"


def test_wait_gives_up_at_its_timeout_and_cancel_stops_the_run(homeo: Homeo) -> None:
    import scriptkit

    run_id = homeo.runs.submit("holder", "sdk-gate").id
    try:
        with pytest.raises(WaitTimeout) as late:
            homeo.runs.wait(run_id, timeout=0)
        assert late.value.run_id == run_id and isinstance(late.value, TimeoutError)
        assert homeo.runs.cancel(run_id).status == "cancelled"
    finally:
        scriptkit.release("sdk-gate")
    with pytest.raises(Conflict):
        homeo.runs.cancel(run_id)


def test_a_run_is_forked_from_a_step(homeo: Homeo) -> None:
    run = homeo.runs.wait(homeo.runs.submit("calc", "2*21").id, DEADLINE)
    fork = homeo.runs.fork(run.id, 1)
    assert fork.forked_from == {"run_id": run.id, "step": 1} and fork.id != run.id
    assert homeo.runs.wait(fork.id, DEADLINE).output == "2*21 = 42"
    with pytest.raises(NotFound):
        homeo.runs.fork(run.id, 99)


def test_a_run_is_submitted_for_a_user(homeo: Homeo) -> None:
    accepted = homeo.runs.submit("echo", "for alice", user="alice")
    assert homeo.runs.wait(accepted.id, DEADLINE).user == "alice"
    assert homeo.runs.get(homeo.runs.submit("echo", "for nobody").id).user is None


def test_agents_and_keys(homeo: Homeo, served: Served) -> None:
    assert {"echo", "calc", "payer"} <= {agent.name for agent in homeo.agents.list()}
    made = homeo.keys.create("ci", role="member")
    assert made.key.startswith("hk_") and made.role == "member" and made.active
    assert made.id in {key.id for key in homeo.keys.list()}
    with Homeo(served.url, made.key) as member:
        assert member.agents.list()
        with pytest.raises(Forbidden):
            member.keys.list()
    assert homeo.keys.revoke(made.id).active is False  # servers refuse it within 5 s
    assert {key.id: key.active for key in homeo.keys.list()}[made.id] is False


def test_errors_are_types_with_the_message_and_request_id(homeo: Homeo, served: Served
                                                           ) -> None:
    with pytest.raises(NotFound) as missing:
        homeo.runs.get("run_" + "0" * 22)
    assert missing.value.status == 404 and missing.value.kind == "not_found"
    assert missing.value.message == f"no run {'run_' + '0' * 22!r}"
    assert missing.value.request_id and missing.value.request_id in str(missing.value)
    with pytest.raises(NotFound):
        homeo.runs.submit("nobody", "hi")
    with pytest.raises(InvalidRequest) as invalid:
        homeo.runs.page(limit=0)
    assert invalid.value.details and invalid.value.details[0]["field"] == "query.limit"
    with Homeo(served.url, "hk_wrong") as stranger, pytest.raises(Unauthorized):
        stranger.runs.page()
    other_tenant = add_key(served, "globex")
    run_id = homeo.runs.submit("echo", "mine").id
    with Homeo(served.url, other_tenant) as other, pytest.raises(NotFound):
        other.runs.get(run_id)
