"""The store contract: every backend must pass every test here."""

from __future__ import annotations

import pytest

from homeo.backends import Backends
from homeo.store.base import CheckpointPruned, LeaseFenced, StoreError
from homeo.store.models import (
    AliasChange,
    ApiKey,
    DatasetRecord,
    ModelRecord,
    DataKeyRecord,
    EvalResult,
    NewRun,
    TenantEncryption,
    UiSession,
    UsageEvent,
    definition_version,
)


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
    backends.store.put_agent("globex", "echo", {"model": "local"})
    assert backends.store.delete_agent("acme", "echo") is True
    assert backends.store.delete_agent("acme", "echo") is False
    assert [a.name for a in backends.store.list_agents("acme")] == ["calc"]
    assert backends.store.get_agent("globex", "echo") is not None  # only acme's went


def test_data_survives_reopening(make_backends) -> None:
    first = make_backends()
    run, _ = first.store.create_run(new_run(idempotency_key="keep"))
    first.close()
    second = make_backends()
    assert second.store.get_run("acme", run.id) == run
    second.store.ping()


def test_usage_sums_succeeded_steps_by_tenant_agent_and_time(backends: Backends) -> None:
    store = backends.store

    def step(tenant: str, agent: str, finished: float, tokens: tuple[int, int], ok=True) -> None:
        run, _ = store.create_run(new_run(tenant, agent=agent), now=finished)
        store.begin_step(tenant, run.id, 0, "model", "model", None, now=finished)
        if ok:
            store.complete_step(tenant, run.id, 0, None, {"seq": 1}, input_tokens=tokens[0],
                                output_tokens=tokens[1], now=finished)
        else:
            store.fail_step(tenant, run.id, 0, "boom", now=finished)

    assert store.usage("acme").total_tokens == 0
    step("acme", "echo", 100.0, (10, 5))
    echo_run = store.list_runs("acme")[0]
    assert store.get_run("acme", echo_run.id).cost_usd == 0.0
    step("acme", "calc", 200.0, (20, 7))
    step("acme", "calc", 300.0, (1000, 1000), ok=False)  # a failed step counts nothing
    step("globex", "echo", 200.0, (500, 500))
    everything = store.usage("acme")
    assert (everything.input_tokens, everything.output_tokens) == (30, 12)
    assert store.usage("acme", since=150.0).total_tokens == 27
    assert store.usage("acme", agent="echo").total_tokens == 15
    assert store.usage("acme", since=150.0, agent="echo").total_tokens == 0
    assert store.usage("globex").total_tokens == 1000
    assert store.usage("initech").total_tokens == 0


def test_step_cost_is_recorded_and_summed_on_the_run(backends: Backends) -> None:
    store = backends.store
    run, _ = store.create_run(new_run(), now=10.0)
    for seq, cost in enumerate((0.25, 0.5)):
        store.begin_step("acme", run.id, seq, "model", "model", None, now=10.0)
        step = store.complete_step("acme", run.id, seq, None, {"seq": seq + 1}, input_tokens=3,
                                   output_tokens=1, cost_usd=cost, now=10.0)
        assert step.cost_usd == cost
    assert store.get_run("acme", run.id).cost_usd == 0.75
    assert [s.cost_usd for s in store.list_steps("acme", run.id)] == [0.25, 0.5]
    totals = store.usage("acme")
    assert (totals.total_tokens, totals.cost_usd) == (8, 0.75)


def test_direct_model_calls_count_for_the_tenant_but_not_for_any_agent(
    backends: Backends,
) -> None:
    store = backends.store
    run, _ = store.create_run(new_run(agent="echo"), now=100.0)
    store.begin_step("acme", run.id, 0, "model", "model", None, now=100.0)
    store.complete_step("acme", run.id, 0, None, {"seq": 1}, input_tokens=10, output_tokens=5,
                        cost_usd=0.5, now=100.0)
    store.record_usage([
        UsageEvent(tenant_id="acme", source="chat", model="fast", input_tokens=7,
                   output_tokens=3, cost_usd=0.25, at=200.0),
        UsageEvent(tenant_id="acme", source="embeddings", model="embedding", input_tokens=4,
                   at=50.0),
        UsageEvent(tenant_id="globex", source="chat", model="fast", input_tokens=900, at=200.0),
    ])
    store.record_usage([])
    everything = store.usage("acme")
    assert (everything.input_tokens, everything.output_tokens, everything.cost_usd) == (
        21, 8, 0.75)
    assert store.usage("acme", since=150.0).total_tokens == 10
    assert store.usage("acme", agent="echo").total_tokens == 15
    assert store.usage("globex").total_tokens == 900


def key(key_id: str, tenant: str = "acme", created: float = 1.0) -> ApiKey:
    return ApiKey(id=key_id, tenant_id=tenant, name=f"{key_id} key", secret_hash="$argon2id$x",
                  created_at=created)


def test_api_keys_are_stored_listed_per_tenant_and_revoked(backends: Backends) -> None:
    store = backends.store
    store.put_key(key("k1", created=1.0))
    store.put_key(key("k2", "globex", created=2.0))
    store.put_key(key("k3", created=3.0))
    assert store.get_key("k1") == key("k1", created=1.0)
    assert store.get_key("nope") is None
    assert [k.id for k in store.list_keys("acme")] == ["k1", "k3"]
    assert [k.id for k in store.list_keys()] == ["k1", "k2", "k3"]
    with pytest.raises(StoreError, match="k1"):
        store.put_key(key("k1", "globex"))
    assert store.get_key("k1").tenant_id == "acme"  # the taken id was not overwritten

    revoked = store.revoke_key("k1", now=50.0)
    assert revoked is not None and revoked.revoked_at == 50.0 and not revoked.active
    assert store.revoke_key("k1", now=60.0).revoked_at == 50.0  # the first time stays
    assert store.revoke_key("nope") is None
    assert store.get_key("k3").active


def test_ui_sessions_are_kept_revoked_and_pruned_when_over(backends: Backends) -> None:
    store = backends.store
    first = UiSession(id="s1", tenant_id="acme", key_id="k1", role="viewer",
                      created_at=10.0, expires_at=20.0)
    store.put_ui_session(first)
    assert store.get_ui_session("s1") == first and first.live(19.0) and not first.live(20.0)
    assert store.get_ui_session("nope") is None
    user = UiSession(id="s2", tenant_id="acme", user_id="ann", role="operator",
                     created_at=15.0, expires_at=100.0)
    store.put_ui_session(user)
    assert store.revoke_ui_session("s2", now=30.0)
    assert not store.revoke_ui_session("s2", now=40.0)  # already ended
    assert store.get_ui_session("s2").revoked_at == 30.0
    # A session that ended before a new one begins is deleted then.
    store.put_ui_session(UiSession(id="s3", tenant_id="acme", key_id="k2", role="admin",
                                   created_at=50.0, expires_at=60.0))
    assert store.get_ui_session("s1") is None and store.get_ui_session("s2") is not None


# --- lease fencing and progress ------------------------------------------------


def test_each_claim_raises_the_fence_and_a_stale_holder_cannot_write(backends: Backends) -> None:
    store = backends.store
    run, _ = store.create_run(new_run())
    first = store.claim_run("acme", run.id)
    assert first is not None and first.status == "running" and first.lease_epoch == 1
    store.begin_step("acme", run.id, 0, "model", "m", None, fence=1)
    # The first holder's lease lapses; a second worker claims the run.
    second = store.claim_run("acme", run.id)
    assert second is not None and second.lease_epoch == 2
    with pytest.raises(LeaseFenced):
        store.complete_step("acme", run.id, 0, "late", {"seq": 1}, input_tokens=5, fence=1)
    with pytest.raises(LeaseFenced):
        store.fail_step("acme", run.id, 0, "late", fence=1)
    with pytest.raises(LeaseFenced):
        store.begin_step("acme", run.id, 1, "model", "m", None, fence=1)
    assert store.transition_run("acme", run.id, "succeeded", allowed_from={"running"},
                                output="late", fence=1) is None
    assert store.release_run("acme", run.id, fence=1) is None
    # Nothing the stale holder tried landed; the new holder goes on.
    after = store.get_run("acme", run.id)
    assert after.status == "running" and after.checkpoint is None and after.input_tokens == 0
    [step] = store.list_steps("acme", run.id)
    assert step.status == "running" and step.output is None
    again = store.begin_step("acme", run.id, 0, "model", "m", None, fence=2)
    assert again.attempts == 2
    store.complete_step("acme", run.id, 0, "ok", {"seq": 1}, fence=2)
    done = store.transition_run("acme", run.id, "succeeded", allowed_from={"running"},
                                output="ok", fence=2)
    assert done is not None and done.status == "succeeded"


def test_claims_count_stalls_only_when_no_step_completed(backends: Backends) -> None:
    store = backends.store
    run, _ = store.create_run(new_run())
    assert store.claim_run("acme", run.id).stalls == 0
    assert store.claim_run("acme", run.id).stalls == 1  # the first claim completed nothing
    claim = store.claim_run("acme", run.id)
    assert claim.stalls == 2
    store.begin_step("acme", run.id, 0, "model", "m", None, fence=claim.lease_epoch)
    store.complete_step("acme", run.id, 0, "x", {"seq": 1}, fence=claim.lease_epoch)
    claim = store.claim_run("acme", run.id)
    assert claim.stalls == 0 and claim.steps_done == 1  # that claim progressed
    # A claim given back at shutdown is not a stall, and keeps the count it had.
    assert store.claim_run("acme", run.id).stalls == 1
    claim = store.claim_run("acme", run.id)
    assert claim.stalls == 2
    released = store.release_run("acme", run.id, fence=claim.lease_epoch)
    assert released is not None and released.status == "queued"
    assert store.claim_run("acme", run.id).stalls == 2


def test_only_queued_or_running_runs_are_claimed(backends: Backends) -> None:
    store = backends.store
    run, _ = store.create_run(new_run())
    store.transition_run("acme", run.id, "cancelled", allowed_from={"queued"})
    assert store.claim_run("acme", run.id) is None
    assert store.claim_run("globex", run.id) is None
    assert store.claim_run("acme", "run_missing") is None


def test_a_step_closed_as_cancelled_counts_what_it_used(backends: Backends) -> None:
    store = backends.store
    run, _ = store.create_run(new_run())
    claim = store.claim_run("acme", run.id)
    store.begin_step("acme", run.id, 0, "model", "m", None, fence=claim.lease_epoch)
    step = store.fail_step("acme", run.id, 0, "the run was cancelled", status="cancelled",
                           input_tokens=7, output_tokens=3, cost_usd=0.5,
                           fence=claim.lease_epoch)
    assert step.status == "cancelled" and step.finished_at is not None
    assert (step.input_tokens, step.output_tokens) == (7, 3)
    after = store.get_run("acme", run.id)
    assert (after.input_tokens, after.output_tokens, after.cost_usd) == (7, 3, 0.5)
    assert store.usage("acme").total_tokens == 10
    with pytest.raises(StoreError):
        store.fail_step("acme", run.id, 0, "twice")


def test_unsettled_runs_are_listed_across_tenants_in_id_order(backends: Backends) -> None:
    store = backends.store
    old = [store.create_run(new_run(tenant), now=100.0)[0] for tenant in ("acme", "globex")]
    store.create_run(new_run(), now=500.0)  # too recent
    ended, _ = store.create_run(new_run(), now=100.0)
    store.transition_run("acme", ended.id, "failed", allowed_from={"queued"}, now=100.0)
    found = store.unsettled_runs(updated_before=200.0)
    assert [run.id for run in found] == sorted(run.id for run in old)
    rest = store.unsettled_runs(updated_before=200.0, after_id=found[0].id)
    assert [run.id for run in rest] == [found[1].id]
    assert store.unsettled_runs(updated_before=200.0, limit=1) == found[:1]


def _ended(backends: Backends, tenant: str, agent: str, status: str, at: float) -> str:
    run, _ = backends.store.create_run(new_run(tenant, agent=agent), now=at - 1)
    backends.store.transition_run(tenant, run.id, status, allowed_from={"queued"}, now=at)
    return run.id


def test_run_outcomes_count_ended_runs_per_window(backends: Backends) -> None:
    _ended(backends, "acme", "echo", "succeeded", 100.0)
    _ended(backends, "acme", "echo", "failed", 200.0)
    _ended(backends, "acme", "calc", "succeeded", 300.0)
    _ended(backends, "acme", "echo", "cancelled", 300.0)  # not counted
    _ended(backends, "globex", "echo", "failed", 300.0)
    _ended(backends, "acme", "echo", "succeeded", 400.0)  # at `until`: outside
    backends.store.create_run(new_run("acme"), now=250.0)  # still queued: not counted
    counts = backends.store.run_outcomes([100.0, 200.0, 301.0], until=400.0)
    assert [(c.since, c.total, c.good) for c in counts] == [
        (100.0, 4, 2), (200.0, 3, 1), (301.0, 0, 0)]
    acme = backends.store.run_outcomes([0.0], until=1000.0, tenant_id="acme")
    assert (acme[0].total, acme[0].good) == (4, 3)
    echo = backends.store.run_outcomes([0.0], until=1000.0, tenant_id="acme", agent="echo")
    assert (echo[0].total, echo[0].good) == (3, 2)
    assert backends.store.run_outcomes([0.0], until=1000.0, tenant_id="nobody")[0].total == 0
    assert backends.store.run_outcomes([], until=1000.0) == []


def test_step_speeds_count_fast_succeeded_steps_per_window(backends: Backends) -> None:
    run, _ = backends.store.create_run(new_run("acme"), now=0.0)
    timings = [(10.0, 11.0, "model"), (20.0, 25.0, "model"), (30.0, 30.5, "tool"),
               (40.0, 50.0, "model")]
    for seq, (began, ended, kind) in enumerate(timings):
        backends.store.begin_step("acme", run.id, seq, kind, kind, None, now=began)
        backends.store.complete_step("acme", run.id, seq, "ok", {}, now=ended)
    backends.store.begin_step("acme", run.id, 4, "model", "model", None, now=60.0)
    backends.store.fail_step("acme", run.id, 4, "boom", now=61.0)  # failed: not counted
    other, _ = backends.store.create_run(new_run("globex"), now=0.0)
    backends.store.begin_step("globex", other.id, 0, "model", "model", None, now=10.0)
    backends.store.complete_step("globex", other.id, 0, "ok", {}, now=10.5)
    counts = backends.store.step_speeds([0.0, 25.0], until=100.0, within_seconds=5.0)
    assert [(c.total, c.good) for c in counts] == [(5, 4), (3, 2)]
    model = backends.store.step_speeds([0.0], until=100.0, within_seconds=1.0,
                                       tenant_id="acme", kind="model")
    assert (model[0].total, model[0].good) == (3, 1)
    before = backends.store.step_speeds([0.0], until=25.0, within_seconds=5.0, tenant_id="acme")
    assert (before[0].total, before[0].good) == (1, 1)
def checkpoint(seq: int, messages: list[str], **fields) -> dict:
    return {"seq": seq, "next": "model",
            "state": {"messages": [{"role": "user", "content": m} for m in messages], **fields}}


def test_every_step_keeps_its_checkpoint_and_any_is_rebuilt(backends: Backends) -> None:
    store = backends.store
    run, _ = store.create_run(new_run())
    states = [checkpoint(1, ["a"], turns=1), checkpoint(2, ["a", "b"], turns=2),
              checkpoint(3, ["x"], turns=2), checkpoint(4, ["x", "y", "z"], turns=3)]
    previous = None
    for seq, state in enumerate(states):
        store.begin_step("acme", run.id, seq, "model", "model", None)
        # The caller may pass the previous checkpoint (the runner does) or not.
        store.complete_step("acme", run.id, seq, None, state,
                            previous=previous if seq % 2 else None)
        previous = state
    for seq, state in enumerate(states):
        assert store.checkpoint_at("acme", run.id, seq) == state
    assert store.checkpoint_at("acme", run.id, 4) is None
    assert store.checkpoint_at("globex", run.id, 1) is None
    store.begin_step("acme", run.id, 4, "model", "model", None)
    assert store.checkpoint_at("acme", run.id, 4) is None  # running: no checkpoint yet


def test_a_fork_records_its_origin_and_first_checkpoint(backends: Backends) -> None:
    start = checkpoint(3, ["a"])
    run, _ = backends.store.create_run(new_run(checkpoint=start, forked_from_run="run_origin",
                                               forked_from_step=2))
    assert (run.forked_from_run, run.forked_from_step, run.checkpoint) == (
        "run_origin", 2, start)
    backends.store.begin_step("acme", run.id, 3, "model", "model", None)
    backends.store.complete_step("acme", run.id, 3, None, checkpoint(4, ["a", "b"]),
                                 previous=start)
    assert backends.store.checkpoint_at("acme", run.id, 3) == checkpoint(4, ["a", "b"])


def test_pruning_removes_old_finished_runs_checkpoints_only(backends: Backends) -> None:
    store = backends.store
    runs = []
    for finished in (100.0, 200.0, None):
        run, _ = store.create_run(new_run())
        for seq in range(2):
            store.begin_step("acme", run.id, seq, "model", "model", None)
            store.complete_step("acme", run.id, seq, "out", checkpoint(seq + 1, ["a"] * (seq + 1)))
        if finished is not None:
            store.transition_run("acme", run.id, "succeeded", allowed_from={"queued"},
                                 now=finished)
        runs.append(run)
    counted = store.prune_checkpoints(finished_before=150.0, dry_run=True, now=300.0)
    assert (counted.runs, counted.checkpoints) == (1, 2) and counted.bytes > 50
    assert store.checkpoint_at("acme", runs[0].id, 0) is not None
    assert store.prune_checkpoints(finished_before=150.0, batch=1, now=300.0) == counted
    with pytest.raises(CheckpointPruned, match="were pruned at"):
        store.checkpoint_at("acme", runs[0].id, 0)
    assert store.checkpoint_at("acme", runs[0].id, 1) == checkpoint(2, ["a", "a"])  # final
    assert store.get_run("acme", runs[0].id).checkpoints_pruned_at == 300.0
    assert [s.output for s in store.list_steps("acme", runs[0].id)] == ["out", "out"]
    # Runs that finished later, or have not finished, keep theirs.
    assert store.prune_checkpoints(finished_before=10_000.0, batch=1, now=400.0).runs == 1
    assert store.checkpoint_at("acme", runs[2].id, 0) == checkpoint(1, ["a"])


def test_freeing_space_prunes_as_retention_does_and_the_store_goes_on(
        backends: Backends) -> None:
    store = backends.store
    run, _ = store.create_run(new_run())
    for seq in range(2):
        store.begin_step("acme", run.id, seq, "model", "model", None)
        store.complete_step("acme", run.id, seq, "out",
                            checkpoint(seq + 1, ["a" * 4000] * (seq + 1)))
    store.transition_run("acme", run.id, "succeeded", allowed_from={"queued"}, now=100.0)

    pruned, given = store.free_space(finished_before=150.0, now=300.0)

    assert (pruned.runs, pruned.checkpoints) == (1, 2) and pruned.bytes > 4000
    assert given >= 0
    with pytest.raises(CheckpointPruned):
        store.checkpoint_at("acme", run.id, 0)
    assert store.checkpoint_at("acme", run.id, 1) == checkpoint(2, ["a" * 4000] * 2)
    later, _ = store.create_run(new_run(idempotency_key="after"))
    assert store.get_run("acme", later.id).status == "queued"


def test_every_changed_definition_is_a_version_with_its_parent_and_author(
    backends: Backends,
) -> None:
    store = backends.store
    first = store.put_agent("acme", "echo", {"model": "local", "max_steps": 3}, now=10.0)
    same = store.put_agent("acme", "echo", {"max_steps": 3, "model": "local"}, now=11.0)
    assert same.version == first.version == definition_version({"model": "local",
                                                                "max_steps": 3})
    second = store.put_agent("acme", "echo", {"model": "local", "max_steps": 5},
                             author="key:k1", now=12.0)
    assert second.version != first.version
    assert store.get_agent("acme", "echo").version == second.version
    versions = store.list_agent_versions("acme", "echo")
    assert [(v.version, v.parent, v.author, v.created_at) for v in versions] == [
        (first.version, None, "folder", 10.0), (second.version, first.version, "key:k1", 12.0)]
    assert store.get_agent_version("acme", "echo", first.version).spec["max_steps"] == 3
    assert store.get_agent_version("globex", "echo", first.version) is None
    assert store.list_agent_versions("globex", "echo") == []
    # Going back to an earlier definition keeps its first record; removing the
    # agent keeps its versions, and a new definition descends from the newest.
    store.put_agent("acme", "echo", {"model": "local", "max_steps": 3}, now=13.0)
    assert store.get_agent("acme", "echo").version == first.version
    assert len(store.list_agent_versions("acme", "echo")) == 2
    store.delete_agent("acme", "echo")
    third = store.put_agent("acme", "echo", {"model": "local", "max_steps": 7}, now=14.0)
    assert store.get_agent_version("acme", "echo", third.version).parent == second.version
    # Where the definition was read from is not part of it.
    assert definition_version({"model": "local", "file": "/a.yaml"}) == definition_version(
        {"model": "local", "file": "/b.yaml"})


def test_a_run_keeps_the_version_of_its_first_claim(backends: Backends) -> None:
    store = backends.store
    old = store.put_agent("acme", "echo", {"model": "local", "max_steps": 3})
    run, _ = store.create_run(new_run())
    assert run.agent_version is None
    assert store.claim_run("acme", run.id).agent_version == old.version
    new = store.put_agent("acme", "echo", {"model": "local", "max_steps": 4})
    assert store.claim_run("acme", run.id).agent_version == old.version  # a resume
    later, _ = store.create_run(new_run())
    assert store.claim_run("acme", later.id).agent_version == new.version
    pinned, _ = store.create_run(new_run(agent_version=old.version))
    assert pinned.agent_version == old.version
    assert store.claim_run("acme", pinned.id).agent_version == old.version
    assert [r.id for r in store.list_runs("acme", agent="echo", agent_version=old.version)] == [
        pinned.id, run.id]
    ghost, _ = store.create_run(new_run(agent="ghost"))
    assert store.claim_run("acme", ghost.id).agent_version is None


def test_eval_results_are_kept_per_tenant_agent_version_and_suite(backends: Backends) -> None:
    def result(tenant: str, version: str, case: str, score: float, suite: str = "s") -> EvalResult:
        return EvalResult(tenant_id=tenant, eval_id=f"ev-{version}-{suite}", suite=suite,
                          agent="echo", agent_version=version, case_id=case, run_id=f"run-{case}",
                          status="succeeded", score=score, passed=score == 1.0,
                          checks=[{"kind": "contains", "score": score, "reason": "r"}], at=5.0)

    backends.store.put_eval_results([result("acme", "v1", "a", 1.0), result("acme", "v1", "b", 0.5),
                                     result("acme", "v2", "a", 0.0),
                                     result("acme", "v2", "a", 1.0, suite="t"),
                                     result("globex", "v1", "a", 1.0)])
    v1 = backends.store.list_eval_results("acme", "echo", agent_version="v1")
    assert [(r.case_id, r.score, r.passed) for r in v1] == [("a", 1.0, True), ("b", 0.5, False)]
    assert v1[1].checks == [{"kind": "contains", "score": 0.5, "reason": "r"}]
    assert len(backends.store.list_eval_results("acme", "echo")) == 4
    assert [r.suite for r in backends.store.list_eval_results("acme", "echo", suite="t")] == ["t"]
    assert backends.store.list_eval_results("globex", "other") == []


def test_evolve_generations_keep_the_latest_state_per_search(backends: Backends) -> None:
    store = backends.store
    assert store.latest_evolve_generation("acme", "s1") is None
    store.put_evolve_generation("acme", "s1", 0, {"population": [1, 2]}, now=1.0)
    store.put_evolve_generation("acme", "s1", 1, {"population": [3]}, now=2.0)
    store.put_evolve_generation("acme", "s2", 0, {"population": []}, now=3.0)
    assert store.latest_evolve_generation("acme", "s1") == (1, {"population": [3]})
    store.put_evolve_generation("acme", "s1", 1, {"population": [4]}, now=4.0)
    assert store.latest_evolve_generation("acme", "s1") == (1, {"population": [4]})
    assert store.latest_evolve_generation("globex", "s1") is None


def test_tenant_encryption_settings_and_data_keys_are_kept_and_rewrapped(
        backends: Backends) -> None:
    store = backends.store
    assert store.tenant_encryption("acme") is None and store.sensitive_tenants() == []
    for tenant, key_id in (("acme", "dk_a"), ("globex", "dk_g")):
        store.put_data_key(DataKeyRecord(id=key_id, tenant_id=tenant, kek_id="kek-1",
                                         wrapped=f"wrapped {key_id}", created_at=1.0))
    store.set_tenant_encryption(TenantEncryption(tenant_id="acme", sensitive=True,
                                                 data_key_id="dk_a", updated_at=2.0))
    store.set_tenant_encryption(TenantEncryption(tenant_id="globex", sensitive=False,
                                                 data_key_id="dk_g", updated_at=2.0))
    assert store.tenant_encryption("acme") == TenantEncryption(
        tenant_id="acme", sensitive=True, data_key_id="dk_a", updated_at=2.0)
    assert store.sensitive_tenants() == ["acme"]
    assert store.get_data_key("dk_a").wrapped == "wrapped dk_a"
    assert store.data_keys_per_kek() == {"kek-1": 2}
    assert [k.id for k in store.data_keys_not_wrapped_by("kek-2", limit=1)] == ["dk_a"]
    assert store.rewrap_data_key("dk_a", "kek-1", "kek-2", "rewrapped")
    assert not store.rewrap_data_key("dk_a", "kek-1", "kek-3", "stale")  # moved on already
    assert store.get_data_key("dk_a").kek_id == "kek-2"
    assert store.data_keys_per_kek() == {"kek-1": 1, "kek-2": 1}
    assert [k.id for k in store.data_keys_not_wrapped_by("kek-2")] == ["dk_g"]
    store.set_tenant_encryption(TenantEncryption(tenant_id="acme", sensitive=False,
                                                 data_key_id="dk_a", updated_at=3.0))
    assert store.sensitive_tenants() == []


def test_datasets_are_versioned_per_tenant(backends: Backends) -> None:
    store = backends.store
    example = {"messages": [{"role": "user", "content": "hi"},
                            {"role": "assistant", "content": "hello"}]}
    first = store.put_dataset(DatasetRecord(tenant_id="acme", name="support", train=[example],
                                            provenance={"runs": ["r1"]}, sha256="a" * 64,
                                            created_at=1.0))
    second = store.put_dataset(DatasetRecord(tenant_id="acme", name="support", train=[],
                                             validation=[example], sha256="b" * 64,
                                             created_at=2.0))
    assert (first.version, second.version) == (1, 2)
    assert store.get_dataset("acme", "support") == second
    assert store.get_dataset("acme", "support", 1) == first
    assert store.get_dataset("globex", "support") is None
    assert [d.version for d in store.list_datasets("acme")] == [1, 2]
    assert store.list_datasets("globex") == []


def test_model_registry_and_alias_history(backends: Backends) -> None:
    store = backends.store
    base = ModelRecord(id="smollm2", kind="base", path="/m/base.gguf", sha256="c" * 64,
                       deployment="smollm2", created_at=1.0, updated_at=1.0)
    tuned = ModelRecord(id="smollm2-support-1", kind="adapter", path="/m/a.gguf",
                        sha256="d" * 64, deployment="smollm2-support", parent="smollm2",
                        dataset="support@1", metrics={"validation_loss": 1.5},
                        created_at=2.0, updated_at=2.0)
    store.put_model(base)
    store.put_model(tuned)
    with pytest.raises(StoreError, match="already registered"):
        store.put_model(base)
    assert store.get_model("smollm2-support-1") == tuned
    assert [m.id for m in store.list_models()] == ["smollm2", "smollm2-support-1"]
    assert store.set_model_stage("smollm2-support-1", "champion", now=3.0)
    assert not store.set_model_stage("absent", "champion", now=3.0)
    assert store.get_model("smollm2-support-1").stage == "champion"
    change = store.add_alias_change(AliasChange(
        alias="chat", model_id="smollm2-support-1", deployment="smollm2-support",
        previous_model_id="smollm2", action="promote", changed_by="ops", at=3.0))
    assert change.seq == 1
    assert store.add_alias_change(change.model_copy(update={"action": "rollback"})).seq == 2
    assert [c.seq for c in store.alias_changes("chat")] == [1, 2]
    assert store.alias_changes("other") == []
