"""Rate limits shared by every server on one database (per API key or JWT user,
and per tenant), and the roles of runs: a member cancels only its own runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from tests.api.conftest import Served, add_key
from tests.api.test_runs import assert_error

SECRET = "shared-limits-" + "k" * 32
JWT = {"jwt_secret": SECRET, "jwt_issuer": "https://login.example.com/",
       "jwt_audience": "homeo", "jwt_algorithms": "HS256"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return request.getfixturevalue("postgres_url")


def user_token(tenant: str, role: str, subject: str) -> str:
    return jwt.encode({"iss": JWT["jwt_issuer"], "aud": "homeo", "sub": subject,
                       "tenant": tenant, "role": role, "exp": 4_000_000_000},
                      SECRET, algorithm="HS256")


def test_two_servers_on_one_database_share_each_keys_budget(
    serve: Callable[..., Served], database_url: str
) -> None:
    first = serve(with_worker=False, database_url=database_url, key_rate_limit="5/hour", **JWT)
    second = serve(with_worker=False, database_url=database_url, key_rate_limit="5/hour", **JWT)
    key = add_key(first, "acme")
    with first.client_for(key) as on_first, second.client_for(key) as on_second:
        for client in (on_first, on_second, on_first, on_second, on_first):
            assert client.get("/v1/agents").status_code == 200
        for client in (on_second, on_first):  # the 6th call is refused by either server
            message = assert_error(client.get("/v1/agents"), 429, "rate_limited")
            assert f"API key hk_{key.split('_')[1]}_… is over its rate limit" in message
            assert "HOMEO_KEY_RATE_LIMIT=5/hour; retry in" in message
    # A JWT user has its own budget, shared the same way.
    token = user_token("acme", "member", "alice")
    with first.client_for(token) as alice_first, second.client_for(token) as alice_second:
        for client in (alice_first, alice_second) * 2 + (alice_first,):
            assert client.get("/v1/agents").status_code == 200
        message = assert_error(alice_second.get("/v1/agents"), 429, "rate_limited")
        assert message.startswith("user 'alice' is over its rate limit")
    with second.client_for(user_token("acme", "member", "bob")) as bob:
        assert bob.get("/v1/agents").status_code == 200


def test_a_tenant_budget_is_shared_by_its_keys_and_users_on_every_server(
    serve: Callable[..., Served], database_url: str
) -> None:
    first = serve(with_worker=False, database_url=database_url, tenant_rate_limit="4/hour", **JWT)
    second = serve(with_worker=False, database_url=database_url, tenant_rate_limit="4/hour",
                   **JWT)
    one, two = add_key(first, "acme"), add_key(first, "acme")
    with first.client_for(one) as a, second.client_for(two) as b, \
            first.client_for(user_token("acme", "viewer", "carol")) as carol:
        for client in (a, b, carol, a):
            assert client.get("/v1/agents").status_code == 200
        for client in (b, carol):
            message = assert_error(client.get("/v1/agents"), 429, "rate_limited")
            assert message.startswith("tenant 'acme' is over its rate limit"
                                      " HOMEO_TENANT_RATE_LIMIT=4/hour; retry in")
    with second.client_for(add_key(first, "globex")) as globex:  # another tenant's budget
        assert globex.get("/v1/agents").status_code == 200


class FrozenWallClock:
    """The servers' shared wall clock, still unless a test moves it: failed checks
    must not earn tokens back while a busy machine runs the test."""

    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


def test_failed_authentication_is_throttled_across_servers_on_one_database(
    serve: Callable[..., Served], database_url: str
) -> None:
    clock = FrozenWallClock()
    first = serve(with_worker=False, database_url=database_url, wall_clock=clock, **JWT)
    second = serve(with_worker=False, database_url=database_url, wall_clock=clock, **JWT)
    key = add_key(first, "acme")
    with first.client_for(key) as owner:
        assert owner.get("/v1/agents").status_code == 200  # verified by the first server
    forged = jwt.encode({"iss": JWT["jwt_issuer"], "aud": "homeo", "sub": "mallory",
                         "tenant": "acme", "role": "admin", "exp": 4_000_000_000},
                        "not-the-secret-" + "x" * 32, algorithm="HS256")
    guesses = ["hk_0123456789abcdef_" + "a" * 43, "not a key", forged]
    # 20 failures (the default burst), alternating servers: each saw only 10.
    for number in range(20):
        server = (first, second)[number % 2]
        with server.client_for(guesses[number % 3]) as attacker:
            assert_error(attacker.get("/v1/agents"), 401, "unauthorized")
    for server in (first, second):  # both refuse the 21st before checking anything
        with server.client_for(guesses[0]) as attacker:
            message = assert_error(attacker.get("/v1/agents"), 429, "rate_limited")
            assert message.startswith("too many failed API key checks from 127.0.0.1;")
    # The second server never verified the key, so from the throttled address it
    # is refused too; the first, which did, still lets its owner in.
    with first.client_for(key) as owner:
        assert owner.get("/v1/agents").status_code == 200
    with second.client_for(key) as owner:
        assert_error(owner.get("/v1/agents"), 429, "rate_limited")
    clock.now += 3.0  # one failure's worth comes back, for every server at once
    with second.client_for(key) as owner:
        assert owner.get("/v1/agents").status_code == 200


def test_a_member_cancels_its_own_runs_and_an_operator_any(serve: Callable[..., Served]) -> None:
    served = serve(with_worker=False, **JWT)
    member, other_member = add_key(served, "acme"), add_key(served, "acme")
    operator = add_key(served, "acme", role="operator")
    viewer = add_key(served, "acme", role="viewer")
    with served.client_for(member) as mine, served.client_for(other_member) as theirs, \
            served.client_for(operator) as ops, served.client_for(viewer) as looker:
        own = mine.post("/v1/runs", json={"agent": "echo", "input": "a"}).json()["id"]
        another = mine.post("/v1/runs", json={"agent": "echo", "input": "b"}).json()["id"]
        refused = theirs.post(f"/v1/runs/{own}/cancel")
        assert "cancels only the runs it submitted" in assert_error(refused, 403, "forbidden")
        assert mine.post(f"/v1/runs/{own}/cancel").json()["status"] == "cancelled"
        assert ops.post(f"/v1/runs/{another}/cancel").json()["status"] == "cancelled"
        # A viewer reads runs but neither submits nor cancels.
        assert looker.get(f"/v1/runs/{own}").json()["status"] == "cancelled"
        assert "this needs member" in assert_error(
            looker.post("/v1/runs", json={"agent": "echo", "input": "c"}), 403, "forbidden")
        # A missing run is a 404 before any question of who submitted it.
        assert_error(theirs.post("/v1/runs/run_0000000000000000000000/cancel"), 404, "not_found")
    # A JWT member cancels the runs it submitted too (its subject is the submitter).
    with served.client_for(user_token("acme", "member", "dana")) as dana:
        run_id = dana.post("/v1/runs", json={"agent": "echo", "input": "d"}).json()["id"]
        assert dana.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"


def test_jwt_refusals_are_401s_that_say_why(serve: Callable[..., Served]) -> None:
    served = serve(with_worker=False, **JWT)
    expired = jwt.encode({"iss": JWT["jwt_issuer"], "aud": "homeo", "sub": "eve",
                          "tenant": "acme", "role": "admin", "exp": 1_000_000_000},
                         SECRET, algorithm="HS256")
    unsigned = jwt.encode({"iss": JWT["jwt_issuer"], "aud": "homeo", "sub": "eve",
                           "tenant": "acme", "role": "admin", "exp": 4_000_000_000},
                          None, algorithm="none")
    for token, problem in ((expired, "JWT expired"), (unsigned, "`alg: none` is refused"),
                           (user_token("acme", "owner", "eve"), "JWT role 'owner' is unknown")):
        with served.client_for(token) as client:
            response = client.get("/v1/runs")
        assert problem in assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_valid_jwt_is_let_in_from_an_address_out_of_tries(
    serve: Callable[..., Served],
) -> None:
    served = serve(with_worker=False, wall_clock=FrozenWallClock(), **JWT)
    for _ in range(20):
        with served.client_for("not a key") as attacker:
            assert_error(attacker.get("/v1/agents"), 401, "unauthorized")
    with served.client_for("hk_0123456789abcdef_" + "a" * 43) as attacker:
        assert_error(attacker.get("/v1/agents"), 429, "rate_limited")
    with served.client_for(user_token("default", "viewer", "carol")) as carol:
        assert carol.get("/v1/agents").status_code == 200
