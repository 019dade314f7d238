"""`homeo memory backup` and `homeo memory restore` through typer's CliRunner
in this process, on a real SQLite file: a round trip with --json counts, a
damaged or foreign backup refused with exit 1 and the memory untouched, and
both recorded in the audit log."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from homeo.audit import generate_key
from homeo.backends import Backends, open_backends
from homeo.crypto import keyfile
from homeo.crypto.tenants import open_cipher
from tests.memory.test_backup import DAMAGE, add_document, populate, state
from tests.support.clikit import homeo, no_homeo_env  # noqa: F401


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'homeo.db'}"


@pytest.fixture
def backends(database: str) -> Backends:
    opened = open_backends(database)
    yield opened
    opened.close()


def test_a_backup_restores_the_tenants_memory_and_both_are_audited(
        backends: Backends, database: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "secrets" / "audit.key"
    generate_key(key)
    monkeypatch.setenv("HOMEO_AUDIT_KEY_FILE", str(key))
    populate(backends, "acme")
    before = state(backends, "acme")
    path = tmp_path / "out" / "acme.tar"
    made = homeo("memory", "backup", str(path), "--tenant", "acme", "--json",
                 "--database-url", database)
    assert made.exit_code == 0, made.output
    report = json.loads(made.stdout)
    assert report["counts"] == {"collections": 2, "documents": 3, "chunks": 6, "memories": 3}
    assert report["tenant"] == "acme" and report["bytes"] == path.stat().st_size
    assert tarfile.is_tarfile(path)

    add_document(backends, "acme", "docs", ["zebra stripes"], seed=11)
    back = homeo("memory", "restore", str(path), "--tenant", "acme", "--database-url", database)
    assert back.exit_code == 0, back.output
    assert "tenant 'acme': restored 2 collections, 3 documents, 6 chunks, 3 memories" in (
        back.stdout)
    assert state(backends, "acme") == before
    kinds = [(entry.kind, entry.actor) for entry in backends.store.list_audit("acme")]
    assert kinds == [("memory.backup", "cli"), ("memory.restore", "cli")]


@pytest.mark.parametrize("damage", ["a flipped byte", "a missing file", "an extra file"])
def test_a_damaged_backup_exits_1_and_changes_nothing(
        backends: Backends, database: str, tmp_path: Path, damage: str) -> None:
    populate(backends, "acme")
    path = tmp_path / "acme.tar"
    assert homeo("memory", "backup", str(path), "--tenant", "acme",
                 "--database-url", database).exit_code == 0
    add_document(backends, "acme", "docs", ["zebra stripes"], seed=11)
    before = state(backends, "acme")
    make, problem = DAMAGE[damage]
    bad = make(path, tmp_path / "bad.tar")
    refused = homeo("memory", "restore", str(bad), "--tenant", "acme", "--json",
                    "--database-url", database)
    assert refused.exit_code == 1
    assert "homeo: nothing restored:" in refused.stderr and problem in refused.stderr
    assert refused.stdout == ""
    assert state(backends, "acme") == before


def test_a_backup_of_another_tenant_or_no_file_is_refused(
        backends: Backends, database: str, tmp_path: Path) -> None:
    populate(backends, "acme")
    path = tmp_path / "acme.tar"
    assert homeo("memory", "backup", str(path), "--tenant", "acme",
                 "--database-url", database).exit_code == 0
    foreign = homeo("memory", "restore", str(path), "--tenant", "globex",
                    "--database-url", database)
    assert foreign.exit_code == 1 and "holds tenant 'acme'" in foreign.stderr
    missing = homeo("memory", "restore", str(tmp_path / "nope.tar"), "--database-url", database)
    assert missing.exit_code == 1 and "no backup at" in missing.stderr
    assert state(backends, "globex")["collections"] == {}


def test_a_sensitive_tenants_backup_is_encrypted_and_restores_only_with_the_key_file(
        backends: Backends, database: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "secrets" / "encryption.keys"
    keyfile.new_key_file(key)
    cipher = open_cipher(key, backends.store)
    assert cipher is not None
    data_key = cipher.set_sensitive("acme", True).data_key_id
    populate(backends, "acme")
    before = state(backends, "acme")
    path = tmp_path / "acme.tar"
    monkeypatch.setenv("HOMEO_ENCRYPTION_KEY_FILE", str(key))
    made = homeo("memory", "backup", str(path), "--tenant", "acme", "--database-url", database)
    assert made.exit_code == 0, made.output
    assert b"walrus" not in path.read_bytes() and b"release branch" not in path.read_bytes()

    add_document(backends, "acme", "docs", ["zebra stripes"], seed=11)
    changed = state(backends, "acme")
    monkeypatch.delenv("HOMEO_ENCRYPTION_KEY_FILE")
    refused = homeo("memory", "restore", str(path), "--tenant", "acme",
                    "--database-url", database)
    assert refused.exit_code == 1
    assert "homeo: nothing restored:" in refused.stderr
    assert f"data key {data_key}" in refused.stderr
    assert "HOMEO_ENCRYPTION_KEY_FILE" in refused.stderr
    assert state(backends, "acme") == changed

    monkeypatch.setenv("HOMEO_ENCRYPTION_KEY_FILE", str(key))
    back = homeo("memory", "restore", str(path), "--tenant", "acme", "--database-url", database)
    assert back.exit_code == 0, back.output
    assert state(backends, "acme") == before
