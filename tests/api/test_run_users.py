"""The person a run works for (`user` on POST /v1/runs): a JWT user's own
subject unless it names someone else, which only an admin may; an API key
names it; an agent whose memory is per user refuses a run that names none."""

from __future__ import annotations

from collections.abc import Callable

from homeo.engine.agents import AgentSpec
from tests.api.conftest import Served, add_key
from tests.api.test_runs import assert_error
from tests.api.test_shared_limits import JWT, user_token

MEMORY_TOOLS = ["homeo.tools.memory_tools:remember", "homeo.tools.memory_tools:recall"]


def per_user_agent(served: Served, tenant: str) -> None:
    served.runtime.agents.publish(tenant, {"concierge": AgentSpec(
        name="concierge", model="test:scripted", tools=MEMORY_TOOLS, memory={"scope": "user"})})


def submitted_for(client, body: dict[str, str]) -> str | None:  # noqa: ANN001 (httpx.Client)
    made = client.post("/v1/runs", json={"agent": "concierge", "input": "hi", **body})
    assert made.status_code == 202, made.text
    return client.get(f"/v1/runs/{made.json()['id']}").json()["user"]


def test_a_run_works_for_the_signed_in_user_or_the_user_a_key_names(
        serve: Callable[..., Served]) -> None:
    served = serve(with_worker=False, **JWT)
    key = add_key(served, "acme")
    per_user_agent(served, "acme")
    with served.client_for(user_token("acme", "member", "alice")) as alice, \
            served.client_for(user_token("acme", "admin", "root")) as admin, \
            served.client_for(key) as service:
        assert submitted_for(alice, {}) == "alice"
        assert submitted_for(alice, {"user": "alice"}) == "alice"
        refused = alice.post("/v1/runs", json={"agent": "concierge", "input": "hi",
                                               "user": "bob"})
        assert "signed in as 'alice'" in assert_error(refused, 403, "forbidden")
        assert submitted_for(admin, {"user": "bob"}) == "bob"
        assert submitted_for(service, {"user": "carol"}) == "carol"
        missing = service.post("/v1/runs", json={"agent": "concierge", "input": "hi"})
        message = assert_error(missing, 422, "invalid_request")
        assert "keeps memory per user" in message and "`user` in POST /v1/runs" in message
        empty = service.post("/v1/runs", json={"agent": "concierge", "input": "hi", "user": ""})
        assert_error(empty, 422, "invalid_request")
    # An agent without per-user memory runs with or without a user.
    echo = served.client.post("/v1/runs", json={"agent": "echo", "input": "hi"})
    assert echo.status_code == 202
    assert served.client.get(f"/v1/runs/{echo.json()['id']}").json()["user"] is None
    assert served.runtime.backends.store.list_runs("acme", agent="concierge", limit=10)
