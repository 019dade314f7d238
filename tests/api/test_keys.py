"""/v1/keys: a tenant's admin keys manage the tenant's keys, and nothing else."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import Served, add_key
from tests.api.test_runs import assert_error


def test_an_admin_makes_a_member_key_that_works_at_once_and_lists_it(served: Served) -> None:
    made = served.client.post("/v1/keys", json={"name": "ci bot"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["role"] == "member" and body["tenant_id"] == "default" and body["active"]
    assert body["key"].startswith(f"hk_{body['id']}_")
    with served.client_for(body["key"]) as member:
        assert member.get("/v1/agents").status_code == 200

    listed = served.client.get("/v1/keys").json()
    assert [(k["id"], k["name"], k["role"]) for k in listed][-1] == (body["id"], "ci bot",
                                                                     "member")
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    assert body["key"].split("_", 2)[2] not in served.client.get("/v1/keys").text


def test_a_revoked_key_is_refused_and_listed_as_revoked(served: Served) -> None:
    made = served.client.post("/v1/keys", json={"name": "temp", "role": "admin"}).json()
    revoked = served.client.post(f"/v1/keys/{made['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    with served.client_for(made["key"]) as gone:  # never used before: refused at once
        assert "was revoked" in assert_error(gone.get("/v1/keys"), 401, "unauthorized")
    again = served.client.post(f"/v1/keys/{made['id']}/revoke").json()
    assert again["revoked_at"] == revoked.json()["revoked_at"]


def test_a_member_key_cannot_manage_keys(served: Served) -> None:
    with served.client_for(add_key(served, "default")) as member:
        for response in (member.get("/v1/keys"), member.post("/v1/keys", json={}),
                         member.post("/v1/keys/0123456789abcdef/revoke")):
            assert "has role member; this needs admin or above" in assert_error(
                response, 403, "forbidden")


def test_an_admin_sees_and_touches_only_its_own_tenant(served: Served) -> None:
    globex_admin = add_key(served, "globex", role="admin")
    globex_member_id = add_key(served, "globex").split("_")[1]
    with served.client_for(globex_admin) as globex:
        assert {k["tenant_id"] for k in globex.get("/v1/keys").json()} == {"globex"}
        made = globex.post("/v1/keys", json={"role": "admin"}).json()
        assert made["tenant_id"] == "globex"  # an admin makes keys for its own tenant only
    # The default tenant's admin cannot see, or revoke, globex's keys.
    assert globex_member_id not in {k["id"] for k in served.client.get("/v1/keys").json()}
    refused = served.client.post(f"/v1/keys/{globex_member_id}/revoke")
    assert f"no API key '{globex_member_id}' in this tenant" in assert_error(
        refused, 404, "not_found")
    assert served.runtime.backends.store.get_key(globex_member_id).active


@pytest.mark.parametrize(("body", "problem"), [
    ({"role": "owner"}, "body.role"),
    ({"name": "x" * 201}, "body.name"),
    ({"tenant_id": "globex"}, "body.tenant_id: Extra inputs are not permitted"),
])
def test_a_bad_new_key_request_says_what_is_wrong(api: httpx.Client, body: dict, problem: str
                                                  ) -> None:
    assert problem in assert_error(api.post("/v1/keys", json=body), 422, "invalid_request")
