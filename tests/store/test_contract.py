"""The store contract: every backend must pass every test here."""

from __future__ import annotations

import pytest

from homeo.backends import Backends
from homeo.store.base import StoreError
from homeo.store.models import NewRun


def new_run(tenant: str = "acme", **fields) -> NewRun:
    return NewRun(tenant_id=tenant, agent=fields.pop("agent", "echo"), input="hi", **fields)


def test_create_and_get_run(backends: Backends) -> None:
    run, created = backends.store.create_run(new_run(request_id="req-1"), now=100.0)
    assert created
    assert run.status == "queued" and run.created_at == 100.0 and run.request_id == "req-1"
    assert backends.store.get_run("acme", run.id) == run


def test_run_status_is_the_cheap_check(backends: Backends) -> None:
    run, _ = backends.store.create_run(new_run())
    assert backends.store.run_status("acme", run.id) == "queued"
    backends.store.transition_run("acme", run.id, "cancelled", allowed_from={"queued"})
    assert backends.store.run_status("acme", run.id) == "cancelled"
    assert backends.store.run_status("globex", run.id) is None
    assert backends.store.run_status("acme", "run_missing") is None


def test_idempotency_key_returns_the_same_run(backends: Backends) -> None:
    first, created = backends.store.create_run(new_run(idempotency_key="k1"))
    again, created_again = backends.store.create_run(new_run(idempotency_key="k1"))
    assert created and not created_again
    assert again.id == first.id
    other_tenant, created_other = backends.store.create_run(new_run("globex", idempotency_key="k1"))
    assert created_other and other_tenant.id != first.id


def test_tenants_never_see_each_others_runs(backends: Backends) -> None:
    run, _ = backends.store.create_run(new_run("acme"))
    backends.store.begin_step("acme", run.id, 0, "model", "model", {"x": 1})
    assert backends.store.get_run("globex", run.id) is None
    assert backends.store.list_runs("globex") == []
    assert backends.store.list_steps("globex", run.id) == []
    assert backends.store.transition_run(
        "globex", run.id, "cancelled", allowed_from={"queued"}
    ) is None
    with pytest.raises(StoreError):
        backends.store.begin_step("globex", run.id, 1, "model", "model", None)
    assert backends.store.count_runs("globex") == {}
    assert backends.store.count_runs("acme") == {"queued": 1}


def test_list_runs_filters_and_pages_newest_first(backends: Backends) -> None:
    ids = []
    for index in range(5):
        agent = "echo" if index % 2 == 0 else "calc"
        run, _ = backends.store.create_run(new_run(agent=agent), now=1000.0 + index)
        ids.append(run.id)
    listed = backends.store.list_runs("acme")
    assert [run.id for run in listed] == ids[::-1]
    assert [r.id for r in backends.store.list_runs("acme", agent="calc")] == [ids[3], ids[1]]
    page = backends.store.list_runs("acme", limit=2)
    assert [r.id for r in page] == [ids[4], ids[3]]
    next_page = backends.store.list_runs("acme", limit=2, before=page[-1].id)
    assert [r.id for r in next_page] == [ids[2], ids[1]]
    backends.store.transition_run("acme", ids[0], "running", allowed_from={"queued"})
    assert [r.id for r in backends.store.list_runs("acme", status="running")] == [ids[0]]


def test_transition_only_from_allowed_states(backends: Backends) -> None:
    run, _ = backends.store.create_run(new_run())
    running = backends.store.transition_run(
        "acme", run.id, "running", allowed_from={"queued"}, now=5.0
    )
    assert running is not None and running.status == "running" and running.started_at == 5.0
    assert backends.store.transition_run("acme", run.id, "running", allowed_from={"queued"}) is None
    done = backends.store.transition_run(
        "acme", run.id, "succeeded", allowed_from={"running"}, output="42", now=9.0
    )
    assert done is not None and done.output == "42" and done.finished_at == 9.0
    assert done.started_at == 5.0 and done.is_final
    assert backends.store.transition_run(
        "acme", run.id, "cancelled", allowed_from={"queued", "running"}
    ) is None
    assert backends.store.count_runs() == {"succeeded": 1}


def test_steps_checkpoint_state_and_usage_atomically(backends: Backends) -> None:
    run, _ = backends.store.create_run(new_run())
    step = backends.store.begin_step("acme", run.id, 0, "model", "model", {"messages": 1}, now=1.0)
    assert step.status == "running" and step.attempts == 1 and step.input == {"messages": 1}
    done = backends.store.complete_step(
        "acme", run.id, 0, {"content": "hi"}, {"next": "tools", "n": 1},
        input_tokens=10, output_tokens=3, now=2.0,
    )
    assert done.status == "succeeded" and done.output == {"content": "hi"}
    assert done.finished_at == 2.0 and done.input_tokens == 10
    reloaded = backends.store.get_run("acme", run.id)
    assert reloaded.checkpoint == {"next": "tools", "n": 1}
    assert (reloaded.input_tokens, reloaded.output_tokens) == (10, 3)
    backends.store.begin_step("acme", run.id, 1, "tool", "add", {"a": 1})
    backends.store.complete_step("acme", run.id, 1, 3, {"next": "model", "n": 2}, output_tokens=1)
    reloaded = backends.store.get_run("acme", run.id)
    assert reloaded.output_tokens == 4 and reloaded.checkpoint["n"] == 2
    assert [s.seq for s in backends.store.list_steps("acme", run.id)] == [0, 1]
    assert [s.seq for s in backends.store.list_steps("acme", run.id, after_seq=0)] == [1]


def test_a_step_begun_again_counts_attempts_and_completed_steps_are_never_redone(
    backends: Backends,
) -> None:
    run, _ = backends.store.create_run(new_run())
    backends.store.begin_step("acme", run.id, 0, "tool", "write", {"line": "a"})
    again = backends.store.begin_step("acme", run.id, 0, "tool", "write", {"line": "a"})
    assert again.attempts == 2 and again.status == "running"
    backends.store.complete_step("acme", run.id, 0, "ok", {"next": "end"})
    with pytest.raises(StoreError):
        backends.store.begin_step("acme", run.id, 0, "tool", "write", {"line": "a"})
    with pytest.raises(StoreError):
        backends.store.complete_step("acme", run.id, 0, "twice", {"next": "end"})


def test_fail_step_records_the_error(backends: Backends) -> None:
    run, _ = backends.store.create_run(new_run())
    backends.store.begin_step("acme", run.id, 0, "tool", "boom", {})
    failed = backends.store.fail_step("acme", run.id, 0, "ValueError: boom", now=3.0)
    assert failed.status == "failed" and failed.error == "ValueError: boom"
    with pytest.raises(StoreError):
        backends.store.fail_step("acme", run.id, 0, "again")
    retried = backends.store.begin_step("acme", run.id, 0, "tool", "boom", {})
    assert retried.attempts == 2 and retried.error is None


def test_agents_are_stored_per_tenant(backends: Backends) -> None:
    backends.store.put_agent("acme", "echo", {"model": "local", "max_steps": 3})
    backends.store.put_agent("acme", "echo", {"model": "local", "max_steps": 5})
    backends.store.put_agent("acme", "calc", {"model": "local"})
    assert backends.store.get_agent("acme", "echo").spec["max_steps"] == 5
    assert [a.name for a in backends.store.list_agents("acme")] == ["calc", "echo"]
    assert backends.store.get_agent("globex", "echo") is None
    assert backends.store.list_agents("globex") == []


def test_data_survives_reopening(make_backends) -> None:
    first = make_backends()
    run, _ = first.store.create_run(new_run(idempotency_key="keep"))
    first.close()
    second = make_backends()
    assert second.store.get_run("acme", run.id) == run
    second.store.ping()
