"""follow_run: each change of a run's steps and status, once, in order, from the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from homeo.backends import Backends
from homeo.engine.follow import follow_run
from homeo.engine.submit import RunNotFound
from homeo.store.models import NewRun, Run, Step

TENANT = "acme"


def seen(item: Step | Run) -> tuple[object, ...]:
    if isinstance(item, Step):
        return ("step", item.seq, item.status, item.attempts)
    return ("run", item.status)


def test_follow_yields_every_change_once_and_ends_with_the_final_run(
    backends: Backends,
) -> None:
    store = backends.store
    run, _ = store.create_run(NewRun(tenant_id=TENANT, agent="a", input="hi"))
    state = {"seq": 0, "next": None, "state": {}}
    # What the engine does between two looks of the follower: each look's
    # "sleep" makes the next change, so the test needs no clock.
    changes: list[Callable[[], object]] = [
        lambda: store.transition_run(TENANT, run.id, "running", allowed_from={"queued"}),
        lambda: store.begin_step(TENANT, run.id, 0, "model", "model", {"n": 1}),
        lambda: None,  # a look that finds nothing new
        lambda: store.complete_step(TENANT, run.id, 0, {"ok": 1}, state),
        lambda: store.begin_step(TENANT, run.id, 1, "tool", "calc", {"x": 2}),
        lambda: store.fail_step(TENANT, run.id, 1, "boom"),
        lambda: (store.begin_step(TENANT, run.id, 1, "tool", "calc", {"x": 2}),
                 store.complete_step(TENANT, run.id, 1, {"ok": 2}, state),
                 store.transition_run(TENANT, run.id, "succeeded", allowed_from={"running"},
                                      output="done")),
    ]

    async def next_change(seconds: float) -> None:
        changes.pop(0)()

    async def follow() -> list[Step | Run]:
        return [item async for item in follow_run(store, TENANT, run.id, sleep=next_change)]

    items = asyncio.run(follow())
    assert [seen(item) for item in items] == [
        ("run", "queued"),
        ("run", "running"),
        ("step", 0, "running", 1),
        ("step", 0, "succeeded", 1),
        ("step", 1, "running", 1),
        ("step", 1, "failed", 1),
        ("step", 1, "succeeded", 2),
        ("run", "succeeded"),
    ]
    assert changes == []
    assert items[-1].output == "done" and items[3].output == {"ok": 1}


def test_following_a_run_of_another_tenant_or_none_raises_run_not_found(
    backends: Backends,
) -> None:
    run, _ = backends.store.create_run(NewRun(tenant_id=TENANT, agent="a", input="hi"))

    async def first(tenant: str, run_id: str) -> Step | Run:
        async for item in follow_run(backends.store, tenant, run_id):
            return item
        raise AssertionError("follow_run yielded nothing")

    assert seen(asyncio.run(first(TENANT, run.id))) == ("run", "queued")
    for tenant, run_id in (("globex", run.id), (TENANT, "run_" + "0" * 22)):
        with pytest.raises(RunNotFound, match=f"no run '{run_id}' for tenant '{tenant}'"):
            asyncio.run(first(tenant, run_id))


def test_until_ends_the_following_after_one_more_look(backends: Backends) -> None:
    store = backends.store
    run, _ = store.create_run(NewRun(tenant_id=TENANT, agent="a", input="hi"))
    stopped = False

    async def worker_stops(seconds: float) -> None:
        # What a stopping worker writes before it is done, then it is done.
        nonlocal stopped
        store.transition_run(TENANT, run.id, "running", allowed_from={"queued"})
        store.begin_step(TENANT, run.id, 0, "model", "model", {})
        store.transition_run(TENANT, run.id, "queued", allowed_from={"running"})
        stopped = True

    async def follow() -> list[Step | Run]:
        return [item async for item in follow_run(store, TENANT, run.id, sleep=worker_stops,
                                                  until=lambda: stopped)]

    assert [seen(item) for item in asyncio.run(follow())] == [
        ("run", "queued"), ("step", 0, "running", 1)]
