"""The audit log on every backend: appended with the change it records,
chained and signed with ML-DSA-65, and every kind of tampering found with the
public key alone, naming the first bad entry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homeo.audit import (
    AuditKeyError,
    AuditLog,
    AuditSigner,
    Event,
    generate_key,
    load_public_key,
    verify_log,
)
from homeo.backends import Backends
from homeo.store.models import ApiKey


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    private = tmp_path_factory.mktemp("keys") / "audit.key"
    return private, generate_key(private)


def clock() -> Callable[[], float]:
    ticks = iter(range(1000, 100000))
    return lambda: float(next(ticks))


def logged(backends: Backends, key_files: tuple[Path, Path], count: int = 5) -> AuditLog:
    log = AuditLog(backends.store, AuditSigner.load(key_files[0]), now=clock())
    for number in range(count):
        log.record("acme", Event("run.submitted", "key:k1", f"run:{number}", {"n": number}))
    log.record("globex", Event("key.created", "cli", "key:g1", {"role": "admin"}))
    return log


def check(backends: Backends, key_files: tuple[Path, Path], tenant: str = "acme") -> Any:
    store = backends.store
    return verify_log(tenant, store.list_audit(tenant), store.audit_head(tenant),
                      load_public_key(key_files[1]))


def sql(backends: Backends, text: str, params: tuple = ()) -> None:
    """What an attacker with the database does: plain SQL behind homeo's back."""
    with backends.store.db.write() as db:  # type: ignore[attr-defined]
        db.execute(backends.store.db.sql(text), params)  # type: ignore[attr-defined]


def test_an_untouched_log_verifies_with_the_public_key(backends: Backends,
                                                        key_files: tuple[Path, Path]) -> None:
    logged(backends, key_files)
    verdict = check(backends, key_files)
    assert verdict.ok and verdict.entries == 5 and verdict.head.seq == 5
    assert check(backends, key_files, "globex").entries == 1
    assert check(backends, key_files, "initech").ok  # no log yet: nothing to distrust
    assert backends.store.audit_tenants() == ["acme", "globex"]
    entries = backends.store.list_audit("acme", after_seq=2, limit=2)
    assert [(e.seq, e.subject, e.details) for e in entries] == [
        (3, "run:2", {"n": 2}), (4, "run:3", {"n": 3})]
    assert [e.seq for e in backends.store.list_audit("acme", kind="key.created")] == []


@pytest.mark.parametrize(("attack", "first_bad", "problem"), [
    ("edit", 3, "entry 3 was changed"),
    ("edit_actor", 2, "entry 2 was changed"),
    ("delete", 3, "entry 3 is missing"),
    ("reorder", 2, "entry 2 does not follow entry 1"),
    ("insert", 3, "entry 3 does not follow entry 2"),
    ("truncate", 5, "the log ends at entry 4 but its signed head is entry 5"),
    ("swap_signature", 2, "entry 2's signature does not verify"),
    ("rehash", 3, "entry 3's signature does not verify"),
])
def test_every_kind_of_tampering_is_found(backends: Backends, key_files: tuple[Path, Path],
                                          attack: str, first_bad: int, problem: str) -> None:
    logged(backends, key_files)
    store = backends.store
    entries = {e.seq: e for e in store.list_audit("acme")}
    if attack == "edit":
        sql(backends, "UPDATE audit_log SET details = ? WHERE tenant_id = 'acme' AND seq = 3",
            (store.db.json_param({"n": 99}),))  # type: ignore[attr-defined]
    elif attack == "edit_actor":
        sql(backends, "UPDATE audit_log SET actor = 'cli' WHERE tenant_id = 'acme' AND seq = 2")
    elif attack == "delete":
        sql(backends, "DELETE FROM audit_log WHERE tenant_id = 'acme' AND seq = 3")
    elif attack == "reorder":  # entries 2 and 3 change places, seqs and all
        sql(backends, "UPDATE audit_log SET seq = -1 WHERE tenant_id = 'acme' AND seq = 2")
        sql(backends, "UPDATE audit_log SET seq = 2 WHERE tenant_id = 'acme' AND seq = 3")
        sql(backends, "UPDATE audit_log SET seq = 3 WHERE tenant_id = 'acme' AND seq = -1")
    elif attack == "insert":  # a copy of entry 2 slipped in as 3, the rest moved up
        for seq in (5, 4, 3):
            sql(backends, "UPDATE audit_log SET seq = seq + 1 WHERE tenant_id = 'acme'"
                " AND seq = ?", (seq,))
        copy = entries[2]
        sql(backends, "INSERT INTO audit_log (tenant_id, seq, at, kind, actor, subject, details,"
            " prev_hash, hash, key_id, signature) VALUES ('acme', 3, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (copy.at, copy.kind, copy.actor, copy.subject,
             store.db.json_param(copy.details), copy.prev_hash,  # type: ignore[attr-defined]
             copy.hash, copy.key_id, copy.signature))
    elif attack == "truncate":
        sql(backends, "DELETE FROM audit_log WHERE tenant_id = 'acme' AND seq = 5")
    elif attack == "swap_signature":  # entry 2 carries entry 1's (valid) signature
        sql(backends, "UPDATE audit_log SET signature = ? WHERE tenant_id = 'acme' AND seq = 2",
            (entries[1].signature,))
    elif attack == "rehash":  # changed, and its hash recomputed: the signature gives it away
        from homeo.audit import entry_hash

        e = entries[3]
        forged = entry_hash("acme", 3, e.at, e.kind, "cli", e.subject, e.details, e.prev_hash)
        sql(backends, "UPDATE audit_log SET actor = 'cli', hash = ? WHERE tenant_id = 'acme'"
            " AND seq = 3", (forged,))
    verdict = check(backends, key_files)
    assert not verdict.ok
    assert verdict.first_bad == first_bad and problem in verdict.problem, verdict
    assert check(backends, key_files, "globex").ok  # another tenant's log is its own


def test_a_log_signed_by_another_key_is_refused(backends: Backends, key_files: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    logged(backends, key_files)
    other_public = generate_key(tmp_path / "other.key")
    store = backends.store
    verdict = verify_log("acme", store.list_audit("acme"), store.audit_head("acme"),
                         load_public_key(other_public))
    assert verdict.first_bad == 1 and "is signed by key" in verdict.problem


def test_an_entry_commits_with_the_change_it_records_or_not_at_all(
    backends: Backends, key_files: tuple[Path, Path]
) -> None:
    log = AuditLog(backends.store, AuditSigner.load(key_files[0]), now=clock())
    record = ApiKey(id="k9", tenant_id="acme", secret_hash="$argon2id$x", created_at=1.0)
    with pytest.raises(RuntimeError), backends.store.atomic():
        backends.store.put_key(record)
        log.record("acme", Event("key.created", "cli", "key:k9"))
        raise RuntimeError("the process fails before the commit")
    assert backends.store.get_key("k9") is None and backends.store.list_audit("acme") == []
    with backends.store.atomic():
        backends.store.put_key(record)
        log.record("acme", Event("key.created", "cli", "key:k9"))
    assert backends.store.get_key("k9") is not None
    assert [e.subject for e in backends.store.list_audit("acme")] == ["key:k9"]


def test_concurrent_appenders_on_two_connections_keep_one_chain(
    make_backends: Callable[..., Backends], key_files: tuple[Path, Path]
) -> None:
    first, second = make_backends(), make_backends()
    signer = AuditSigner.load(key_files[0])

    def append(backends: Backends) -> None:
        log = AuditLog(backends.store, signer)
        for number in range(6):
            log.record("acme", Event("run.submitted", "key:k1", f"run:{number}"))

    threads = [threading.Thread(target=append, args=(b,)) for b in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    verdict = check(first, key_files)
    assert verdict.ok and verdict.entries == 12


def test_a_bad_key_file_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "not-a-key").write_text("hello")
    with pytest.raises(AuditKeyError, match="homeo audit keygen PATH"):
        AuditSigner.load(tmp_path / "not-a-key")
    with pytest.raises(AuditKeyError, match="cannot read the audit key"):
        AuditSigner.load(tmp_path / "missing.key")
    generate_key(tmp_path / "a.key")
    assert (tmp_path / "a.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        generate_key(tmp_path / "a.key")  # never overwrites a key
