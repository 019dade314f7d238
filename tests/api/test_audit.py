"""GET /v1/audit and the events the API records: keys made and revoked, runs
submitted and cancelled, access denied, each with who did it, in order, per
tenant; and the log verifies with the public key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from homeo.audit import generate_key, load_public_key, verify_log
from tests.api.conftest import Served, add_key
from tests.api.test_runs import assert_error


def audited(serve: Callable[..., Served], tmp_path: Path) -> tuple[Served, Path]:
    key = tmp_path / "secrets" / "audit.key"
    public = generate_key(key)
    return serve(with_worker=False, audit_key_file=key), public


def kinds(client: httpx.Client, **params: object) -> list[tuple[str, str, str]]:
    answer = client.get("/v1/audit", params=params)
    assert answer.status_code == 200, answer.text
    return [(e["kind"], e["actor"], e["subject"]) for e in answer.json()["entries"]]


def test_security_events_are_logged_per_tenant_with_their_actor(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    served, public = audited(serve, tmp_path)
    admin_id = served.key.split("_")[1]
    made = served.client.post("/v1/keys", json={"name": "ci", "role": "member"}).json()
    member = made["key"]
    assert served.client.post(f"/v1/keys/{made['id']}/revoke").status_code == 200
    viewer = add_key(served, "default", role="viewer")
    viewer_id = viewer.split("_")[1]
    with served.client_for(viewer) as looker:
        assert_error(looker.post("/v1/runs", json={"agent": "echo", "input": "x"}), 403,
                     "forbidden")
        assert_error(looker.get("/v1/audit"), 403, "forbidden")
    run_id = served.client.post("/v1/runs", json={"agent": "echo", "input": "x"}).json()["id"]
    assert served.client.post(f"/v1/runs/{run_id}/cancel").status_code == 200
    with served.client_for(member) as gone:  # a 401: not an event of the log
        assert "revoked" in gone.get("/v1/runs").text

    admin = f"key:{admin_id}"
    assert kinds(served.client) == [
        ("key.created", admin, f"key:{made['id']}"),
        ("key.revoked", admin, f"key:{made['id']}"),
        ("access.denied", f"key:{viewer_id}", "POST /v1/runs"),
        ("access.denied", f"key:{viewer_id}", "GET /v1/audit"),
        ("run.submitted", admin, f"run:{run_id}"),
        ("run.cancelled", admin, f"run:{run_id}"),
    ]
    assert kinds(served.client, kind="access.denied", after=3, limit=1) == [
        ("access.denied", f"key:{viewer_id}", "GET /v1/audit")]
    page = served.client.get("/v1/audit", params={"limit": 2}).json()
    assert page["next_after"] == 2 and page["head"]["seq"] == 6

    # Another tenant's admin sees its own log only (its first key was made outside the API).
    with served.client_for(add_key(served, "globex", role="admin")) as globex:
        assert kinds(globex) == []
        globex.post("/v1/keys", json={"name": "g"})
        assert [kind for kind, _, _ in kinds(globex)] == ["key.created"]

    store = served.runtime.backends.store
    for tenant in ("default", "globex"):
        verdict = verify_log(tenant, store.list_audit(tenant), store.audit_head(tenant),
                             load_public_key(public))
        assert verdict.ok, verdict


def test_without_an_audit_key_the_route_says_how_to_turn_it_on(api: httpx.Client) -> None:
    message = assert_error(api.get("/v1/audit"), 404, "not_found")
    assert "set HOMEO_AUDIT_KEY_FILE" in message and "homeo audit keygen" in message


def test_an_operator_approves_a_waiting_run_and_a_member_cannot(
    serve: Callable[..., Served], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
    import waitkit

    from homeo.engine.agents import AgentSpec
    from homeo.engine.react import ApprovalPolicy
    from homeo.llm.providers.scripted import ScriptedModel

    monkeypatch.setenv(waitkit.LOG_ENV, str(tmp_path / "side-effects.log"))
    served, _ = audited(serve, tmp_path)
    runtime = served.runtime
    runtime.models.add("test:deployer", ScriptedModel(waitkit.deployer_model))
    member, operator = add_key(served, "acme"), add_key(served, "acme", role="operator")
    runtime.agents.publish("acme", {"deployer": AgentSpec(
        name="deployer", model="test:deployer", max_steps=4, tools=["waitkit:deploy"],
        approval=ApprovalPolicy(tools=["deploy"]))})
    with served.client_for(member) as asker, served.client_for(operator) as ops:
        run_id = asker.post("/v1/runs", json={"agent": "deployer", "input": "billing"}
                            ).json()["id"]
        assert asyncio.run(runtime.worker(1).run_until_idle()) == 1
        assert asker.get(f"/v1/runs/{run_id}").json()["status"] == "waiting"
        for verb in ("approve", "reject"):
            refused = asker.post(f"/v1/runs/{run_id}/{verb}", json={})
            assert "this needs operator" in assert_error(refused, 403, "forbidden")
        approved = ops.post(f"/v1/runs/{run_id}/approve", json={"comment": "ship it"})
        assert approved.status_code == 200 and approved.json()["status"] == "queued"
        operator_id = operator.split("_")[1]
    entries = runtime.backends.store.list_audit("acme")
    assert [(e.kind, e.actor, e.subject, e.details) for e in entries][-1] == (
        "run.approved", f"key:{operator_id}", f"run:{run_id}", {"comment": "ship it"})
    assert [e.kind for e in entries].count("access.denied") == 2
