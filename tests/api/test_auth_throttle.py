"""Key checks against a real app with real argon2: a guess never locks out the
key's owner, an address that keeps failing gets 429, and a new key is
verified once however many requests carry it at the same time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from homeo.api.app import create_app
from homeo.backends import open_backends
from homeo.config import Settings
from homeo.keys import create_key, parse
from homeo.observe.metrics import Metrics
from tests.api.conftest import Served


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wrong(key: str) -> str:
    key_id, secret = parse(key)
    return f"hk_{key_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"


def test_a_guess_at_a_key_id_does_not_lock_out_its_owner(served: Served) -> None:
    # The server has not verified the key yet; a wrong secret for its public id
    # comes first. The owner is still let in.
    guess = httpx.get(f"{served.url}/v1/agents",
                      headers={"authorization": f"Bearer {wrong(served.key)}"})
    assert guess.status_code == 401 and "wrong secret" in guess.json()["error"]["message"]
    assert served.client.get("/v1/agents").status_code == 200


def test_an_address_that_keeps_failing_gets_429_with_retry_after(tmp_path: Path) -> None:
    clock = Clock()
    backends = open_backends(f"sqlite:///{tmp_path / 'homeo.db'}")
    try:
        key, _ = create_key(backends.store, "default", "owner")
        app = create_app(Settings(data_dir=tmp_path), backends, Metrics(), clock=clock,
                         wall_clock=clock)
        # One client runs the app's lifespan; the other only sends from elsewhere.
        owner = TestClient(app, client=("198.51.100.1", 5000))
        with TestClient(app, client=("203.0.113.9", 5000)) as attacker:
            assert owner.get("/v1/agents", headers={"authorization": f"Bearer {key}"}
                             ).status_code == 200
            answers = [attacker.get("/v1/agents", headers={"authorization": f"Bearer {guess}"})
                       for guess in [wrong(key)] * 10 + ["hk_0123456789abcdef_" + "a" * 43] * 10]
            assert {a.status_code for a in answers} == {401}
            refused = attacker.get("/v1/agents", headers={"authorization": f"Bearer {wrong(key)}"})
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "3"
            assert refused.json()["error"]["type"] == "rate_limited"
            assert "too many failed API key checks from 203.0.113.9" in \
                refused.json()["error"]["message"]
            # The owner, elsewhere, is not affected.
            assert owner.get("/v1/agents", headers={"authorization": f"Bearer {key}"}
                             ).status_code == 200
            clock.now += 3.0  # one more try has come back
            again = attacker.get("/v1/agents", headers={"authorization": f"Bearer {wrong(key)}"})
            assert again.status_code == 401
    finally:
        backends.close()


def test_concurrent_requests_with_a_new_key_run_argon2_once(tmp_path: Path) -> None:
    backends = open_backends(f"sqlite:///{tmp_path / 'homeo.db'}")
    try:
        key, _ = create_key(backends.store, "default", "owner")
        app = create_app(Settings(data_dir=tmp_path), backends, Metrics(), clock=Clock())
        with TestClient(app, headers={"authorization": f"Bearer {key}"}) as client, \
                ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: client.get("/v1/agents"), range(8)))
            assert [a.status_code for a in answers] == [200] * 8
            assert client.get("/v1/agents").status_code == 200
        assert app.state.keys.argon2_checks == 1
    finally:
        backends.close()
