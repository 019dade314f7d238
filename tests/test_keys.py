"""API keys: made, parsed and checked against real stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from homeo.backends import Backends
from homeo.keys import Caller, KeyCheck, KeyRejected, Throttled, create_key, parse


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tenant_of(check: KeyCheck, token: str) -> str:
    return asyncio.run(check.caller(token)).tenant_id


def test_a_key_is_stored_as_an_argon2_hash_never_as_itself(backends: Backends) -> None:
    key, record = create_key(backends.store, "acme", "ci", now=5.0)
    key_id, secret = parse(key)
    stored = backends.store.get_key(key_id)
    assert stored == record and stored.tenant_id == "acme" and stored.created_at == 5.0
    assert stored.secret_hash.startswith("$argon2id$")
    assert secret not in stored.secret_hash and secret not in stored.model_dump_json()


@pytest.mark.parametrize("token", [
    "", "hk_", "sk-123", "hk_0123456789abcdef", "hk_0123456789ABCDEF_" + "a" * 43,
    "hk_0123456789abcdef_short", "hk_0123456789abcdef_" + "a" * 43 + " ",
    "hk_0123456789abcdef_" + "a" * 42 + "!",
])
def test_anything_not_shaped_like_a_key_is_rejected_before_the_store(token: str) -> None:
    with pytest.raises(KeyRejected, match="malformed API key"):
        parse(token)


def test_the_check_gives_the_keys_tenant_and_refuses_a_wrong_secret(backends: Backends) -> None:
    check = KeyCheck(backends.store, clock=Clock())
    acme, _ = create_key(backends.store, "acme")
    globex, _ = create_key(backends.store, "globex")
    assert tenant_of(check, acme) == "acme"
    assert tenant_of(check, globex) == "globex"
    assert tenant_of(check, acme) == "acme"  # from what was verified
    key_id, secret = parse(acme)
    # Once a key is verified, a different secret for the same id is still refused.
    other_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    with pytest.raises(KeyRejected, match=f"wrong secret for API key hk_{key_id}"):
        tenant_of(check, f"hk_{key_id}_{other_secret}")
    with pytest.raises(KeyRejected, match="unknown API key hk_0123456789abcdef"):
        tenant_of(check, "hk_0123456789abcdef_" + secret)


def test_a_revoked_key_is_refused_once_the_check_revalidates(backends: Backends) -> None:
    clock = Clock()
    check = KeyCheck(backends.store, revalidate_seconds=5.0, clock=clock)
    key, record = create_key(backends.store, "acme")
    assert tenant_of(check, key) == "acme"
    backends.store.revoke_key(record.id)  # by another process, say `homeo keys revoke`
    clock.now += 4.9
    assert tenant_of(check, key) == "acme"  # within the revalidation window
    clock.now += 0.2
    with pytest.raises(KeyRejected, match=f"API key hk_{record.id}_… was revoked"):
        tenant_of(check, key)
    clock.now += 100.0
    with pytest.raises(KeyRejected, match="was revoked"):
        tenant_of(check, key)


def test_a_key_never_seen_before_its_revocation_is_refused_at_once(backends: Backends) -> None:
    check = KeyCheck(backends.store, clock=Clock())
    key, record = create_key(backends.store, "acme")
    backends.store.revoke_key(record.id)
    with pytest.raises(KeyRejected, match="was revoked"):
        tenant_of(check, key)


def test_the_check_remembers_a_bounded_number_of_keys(backends: Backends) -> None:
    clock = Clock()
    check = KeyCheck(backends.store, max_remembered=2, clock=clock)
    made = [create_key(backends.store, f"t{n}")[0] for n in range(3)]
    assert [tenant_of(check, key) for key in made] == ["t0", "t1", "t2"]
    assert len(check._verified) == 2
    assert tenant_of(check, made[0]) == "t0"  # verified again from the store


def test_the_caller_carries_the_keys_id_and_role(backends: Backends) -> None:
    check = KeyCheck(backends.store, clock=Clock())
    admin, admin_record = create_key(backends.store, "acme", role="admin")
    member, member_record = create_key(backends.store, "acme")
    assert asyncio.run(check.caller(admin)) == Caller(admin_record.id, "acme", "admin")
    assert asyncio.run(check.caller(admin)).is_admin  # and from what was verified
    assert asyncio.run(check.caller(member)) == Caller(member_record.id, "acme", "member")
    assert backends.store.get_key(admin_record.id).role == "admin"


def _wrong(key: str) -> str:
    key_id, secret = parse(key)
    return f"hk_{key_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"


def test_a_wrong_secret_never_locks_out_the_right_one(backends: Backends) -> None:
    # Key ids are public: a guess at one key, from anywhere, must not refuse
    # its owner, even in a process that has not verified the key yet.
    check = KeyCheck(backends.store, clock=Clock())
    key, _ = create_key(backends.store, "acme")
    with pytest.raises(KeyRejected, match="wrong secret") as first:
        asyncio.run(check.caller(_wrong(key), "203.0.113.9"))
    assert "pause" not in str(first.value)
    assert asyncio.run(check.caller(key, "198.51.100.1")).tenant_id == "acme"


def test_failed_checks_are_throttled_per_client_address(backends: Backends) -> None:
    clock = Clock()
    check = KeyCheck(backends.store, failure_burst=3, failure_refill_seconds=2.0, clock=clock,
                     wall_clock=clock)
    key, _ = create_key(backends.store, "acme")
    other, _ = create_key(backends.store, "globex")
    assert asyncio.run(check.caller(key, "203.0.113.9")).tenant_id == "acme"
    guesses = [_wrong(key), "hk_0123456789abcdef_" + "a" * 43, "not a key"]
    for guess in guesses:
        with pytest.raises(KeyRejected):
            asyncio.run(check.caller(guess, "203.0.113.9"))
    runs = check.argon2_checks
    with pytest.raises(Throttled, match="from 203.0.113.9; retry in 2.0s") as throttled:
        asyncio.run(check.caller(_wrong(key), "203.0.113.9"))
    assert throttled.value.retry_after == 2.0
    assert check.argon2_checks == runs  # refused before any argon2 work
    # Not even a right but unverified secret from there, while throttled ...
    with pytest.raises(Throttled):
        asyncio.run(check.caller(other, "203.0.113.9"))
    # ... but a verified one always, and other addresses are not affected.
    assert asyncio.run(check.caller(key, "203.0.113.9")).tenant_id == "acme"
    assert asyncio.run(check.caller(other, "198.51.100.1")).tenant_id == "globex"
    assert asyncio.run(check.caller(other, "203.0.113.9")).tenant_id == "globex"  # verified
    third, _ = create_key(backends.store, "initech")
    clock.now += 1.0
    with pytest.raises(Throttled, match="retry in 1.0s"):
        asyncio.run(check.caller(third, "203.0.113.9"))
    clock.now += 1.0  # one failure's worth has come back
    assert asyncio.run(check.caller(third, "203.0.113.9")).tenant_id == "initech"


def test_concurrent_checks_of_a_new_key_share_one_argon2_run(backends: Backends) -> None:
    check = KeyCheck(backends.store, clock=Clock())
    key, _ = create_key(backends.store, "acme")

    async def many() -> list[Caller]:
        wrong = [check.caller(_wrong(key), "203.0.113.9") for _ in range(3)]
        right = [check.caller(key, "198.51.100.1") for _ in range(8)]
        return await asyncio.gather(*right, *wrong, return_exceptions=True)

    results = asyncio.run(many())
    assert {r.tenant_id for r in results[:8]} == {"acme"}
    assert all(isinstance(r, KeyRejected) for r in results[8:])
    assert check.argon2_checks == 2  # one for the right secret, one for the wrong one
    asyncio.run(check.caller(key))
    assert check.argon2_checks == 2  # verified once per process
