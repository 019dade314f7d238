"""A sensitive tenant's runs in a real SQLite file and a real PostgreSQL
database: what the store writes holds no planted plaintext (read from the raw
file and the raw rows), reads give it back, and a missing, wrong or tampered
key fails with a typed error naming the key, never plaintext or garbage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from homeo.backends import Backends, open_backends
from homeo.crypto import keyfile
from homeo.crypto.errors import DecryptionFailed, KeyUnavailable
from homeo.crypto.tenants import TenantCipher, open_cipher
from homeo.store.models import NewRun
from homeo.store.sealed import SealedDataError

PLANT = "PLANTED-acme-secret-7c1e"
OTHER = "PLANTED-globex-plain-55aa"


@pytest.fixture
def opened(backend_url: str) -> Any:
    made: list[Backends] = []

    def open_() -> Backends:
        made.append(open_backends(backend_url))
        return made[-1]

    yield open_
    for backends in made:
        backends.close()


def raw_text(backends: Backends, url: str) -> str:
    """Everything the database holds, as stored: the SQLite file and its WAL
    byte for byte, or every PostgreSQL row of the run tables as text."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return "".join(p.read_bytes().decode("latin-1")
                       for p in path.parent.iterdir() if p.name.startswith(path.name))
    database = backends.store.db  # type: ignore[attr-defined]
    rows = []
    with database.read() as db:
        for table in ("runs", "steps", "step_checkpoints", "data_keys"):
            rows += [r["t"] for r in db.execute(f"SELECT row_to_json(x)::text AS t FROM {table} x")]
    return "\n".join(rows)


def plant_run(backends: Backends, tenant: str, secret: str) -> str:
    store = backends.store
    run, _ = store.create_run(NewRun(tenant_id=tenant, agent="a", input=f"task {secret}"))
    claimed = store.claim_run(tenant, run.id)
    assert claimed is not None
    store.begin_step(tenant, run.id, 0, "llm", "think", {"messages": [secret]},
                     fence=claimed.lease_epoch)
    store.complete_step(tenant, run.id, 0, {"answer": secret},
                        {"seq": 1, "state": {"messages": [secret], "n": 1}},
                        fence=claimed.lease_epoch)
    store.begin_step(tenant, run.id, 1, "llm", "think", {"n": 2}, fence=claimed.lease_epoch)
    store.complete_step(tenant, run.id, 1, {"answer": "second"},
                        {"seq": 2, "state": {"messages": [secret, "more"], "n": 2}},
                        fence=claimed.lease_epoch)
    store.transition_run(tenant, run.id, "succeeded", allowed_from={"running"},
                         output=f"done {secret}", fence=claimed.lease_epoch)
    return run.id


def check_reads(backends: Backends, tenant: str, run_id: str, secret: str) -> None:
    store = backends.store
    run = store.get_run(tenant, run_id)
    assert run is not None
    assert run.input == f"task {secret}" and run.output == f"done {secret}"
    assert run.checkpoint == {"seq": 2, "state": {"messages": [secret, "more"], "n": 2}}
    steps = store.list_steps(tenant, run_id)
    assert [s.input for s in steps] == [{"messages": [secret]}, {"n": 2}]
    assert [s.output for s in steps] == [{"answer": secret}, {"answer": "second"}]
    first, last = store.checkpoint_at(tenant, run_id, 0), store.checkpoint_at(tenant, run_id, 1)
    assert first is not None and first["state"] == {"messages": [secret], "n": 1}
    assert last is not None and last["state"] == run.checkpoint["state"]


def sensitive(backends: Backends, key_file: Path, tenant: str = "acme") -> TenantCipher:
    cipher = open_cipher(key_file, backends.store)
    assert cipher is not None
    cipher.set_sensitive(tenant, True)
    return cipher


def test_a_sensitive_tenants_runs_hold_no_plaintext(opened: Any, backend_url: str,
                                                    tmp_path: Path) -> None:
    keyfile.new_key_file(tmp_path / "k.keys")
    backends = opened()
    sensitive(backends, tmp_path / "k.keys")
    sealed_run = plant_run(backends, "acme", PLANT)
    plain_run = plant_run(backends, "globex", OTHER)  # not marked: stays plain
    check_reads(backends, "acme", sealed_run, PLANT)
    check_reads(backends, "globex", plain_run, OTHER)
    raw = raw_text(backends, backend_url)
    assert OTHER in raw  # the raw read sees plain text where there is some
    assert PLANT not in raw
    assert "homeo:enc:v1:" in raw


def test_without_the_key_file_sealed_data_fails_naming_the_key(
        opened: Any, tmp_path: Path) -> None:
    keyfile.new_key_file(tmp_path / "k.keys")
    backends = opened()
    setting = sensitive(backends, tmp_path / "k.keys").set_sensitive("acme", True)
    run_id = plant_run(backends, "acme", PLANT)
    bare = opened()  # no HOMEO_ENCRYPTION_KEY_FILE
    with pytest.raises(SealedDataError, match=str(setting.data_key_id)):
        bare.store.get_run("acme", run_id)
    with pytest.raises(SealedDataError, match="HOMEO_ENCRYPTION_KEY_FILE"):
        bare.store.create_run(NewRun(tenant_id="acme", agent="a", input=PLANT))
    plain = plant_run(bare, "globex", OTHER)  # a tenant not marked needs no key
    check_reads(bare, "globex", plain, OTHER)


def test_another_key_file_fails_naming_the_kek_needed(opened: Any, tmp_path: Path) -> None:
    ring = keyfile.new_key_file(tmp_path / "k.keys")
    other = keyfile.new_key_file(tmp_path / "other.keys")
    backends = opened()
    sensitive(backends, tmp_path / "k.keys")
    run_id = plant_run(backends, "acme", PLANT)
    wrong = opened()
    open_cipher(tmp_path / "other.keys", wrong.store)
    with pytest.raises(KeyUnavailable, match=ring.current) as refused:
        wrong.store.get_run("acme", run_id)
    assert other.current in str(refused.value)  # and says what the file holds


def test_a_changed_ciphertext_in_the_database_is_refused(opened: Any, tmp_path: Path) -> None:
    keyfile.new_key_file(tmp_path / "k.keys")
    backends = opened()
    sensitive(backends, tmp_path / "k.keys")
    run_id = plant_run(backends, "acme", PLANT)
    store = backends.store
    database = store.db  # type: ignore[attr-defined]
    with database.read() as db:
        stored = db.execute(database.sql("SELECT input FROM runs WHERE id = ?"),
                            (run_id,)).fetchone()["input"]
    head, body = stored.rsplit(":", 1)
    changed = head + ":" + body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    with database.write() as db:
        db.execute(database.sql("UPDATE runs SET input = ? WHERE id = ?"), (changed, run_id))
    fresh = opened()
    open_cipher(tmp_path / "k.keys", fresh.store)
    with pytest.raises(DecryptionFailed, match="runs.input"):
        fresh.store.get_run("acme", run_id)


def test_blobs_for_backups_round_trip_and_refuse_changes(opened: Any, tmp_path: Path) -> None:
    keyfile.new_key_file(tmp_path / "k.keys")
    backends = opened()
    cipher = open_cipher(tmp_path / "k.keys", backends.store)
    assert cipher is not None
    data = json.dumps({"memories": [PLANT]}).encode()
    blob = cipher.encrypt("acme", data, "backup")
    assert PLANT.encode() not in blob and blob.startswith(b"HOMEOENC1")
    assert cipher.decrypt("acme", blob, "backup") == data
    with pytest.raises(DecryptionFailed):
        cipher.decrypt("acme", blob[:-1] + bytes([blob[-1] ^ 1]), "backup")
    with pytest.raises(KeyUnavailable, match="globex"):
        cipher.decrypt("globex", blob, "backup")  # another tenant's key id: not its key
    with pytest.raises(DecryptionFailed, match="HOMEOENC1"):
        cipher.decrypt("acme", data, "backup")
    # A tenant with a data key for backups is not thereby sensitive.
    assert backends.store.sensitive_tenants() == []
