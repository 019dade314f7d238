"""POST /v1/memory/backup and /v1/memory/restore over real HTTP: an admin
backs up and restores its own tenant's memory, a member is refused, another
tenant neither sees nor overwrites it, a damaged backup is a 400 that leaves
the memory as it was, and both are in the audit log."""

from __future__ import annotations

import asyncio
import io
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from homeo.audit import generate_key
from homeo.crypto import keyfile

sys.path.insert(0, str(Path(__file__).parent.parent / "support"))
from hashembed import HashingEmbedder  # noqa: E402

from tests.api.conftest import Served, add_key  # noqa: E402
from tests.api.test_runs import assert_error  # noqa: E402

TAR = {"content-type": "application/x-tar"}


@pytest.fixture
def homeo(serve: Callable[..., Served], tmp_path: Path) -> Served:
    key = tmp_path / "secrets" / "audit.key"
    generate_key(key)
    served = serve(with_worker=False, audit_key_file=key)
    served.runtime.models.add("embedding", HashingEmbedder())
    return served


def remember(served: Served, text: str, tenant: str = "default") -> int:
    made = served.runtime.memories()
    assert made is not None
    decision = asyncio.run(made.remember(tenant, "tenant", text))
    assert decision.memory is not None, decision
    return decision.memory.id


def documents(served: Served, client: object = None) -> list[str]:
    api = client or served.client
    listed = api.get("/v1/collections/kb/documents")  # type: ignore[attr-defined]
    return [] if listed.status_code == 404 else [d["title"] for d in listed.json()["documents"]]


def members(archive: bytes) -> dict[str, bytes]:
    found = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as opened:
        for member in opened.getmembers():
            data = opened.extractfile(member)
            assert data is not None
            found[member.name] = data.read()
    return found


def test_an_admin_backs_up_and_restores_its_tenants_memory(homeo: Served) -> None:
    api = homeo.client
    assert api.post("/v1/collections/kb/documents",
                    json={"text": "Deploys go to db-9.", "title": "deploys"}).status_code == 201
    remember(homeo, "The deploy server is db-9")
    taken = api.post("/v1/memory/backup")
    assert taken.status_code == 200, taken.text
    assert taken.headers["content-type"] == "application/x-tar"
    assert 'filename="homeo-memory-default.tar"' in taken.headers["content-disposition"]
    files = members(taken.content)
    assert b"Deploys go to db-9." in files["documents.jsonl"]
    assert b"The deploy server is db-9" in files["memories.jsonl"]

    assert api.post("/v1/collections/kb/documents",
                    json={"text": "Added after.", "title": "later"}).status_code == 201
    back = api.post("/v1/memory/restore", content=taken.content, headers=TAR)
    assert back.status_code == 200, back.text
    assert back.json()["counts"] == {"collections": 1, "documents": 1, "chunks": 1,
                                     "memories": 1}
    assert documents(homeo) == ["deploys"]
    # A search after the restore reads the restored vectors, not the ones held before.
    hits = api.get("/v1/collections/kb/search", params={"q": "added after"}).json()["results"]
    assert [hit["title"] for hit in hits] == ["deploys"]
    kinds = [(e["kind"], e["subject"]) for e in api.get("/v1/audit").json()["entries"]]
    assert ("memory.backup", "tenant:default") in kinds
    assert ("memory.restore", "tenant:default") in kinds


def test_a_member_is_refused_both(homeo: Served) -> None:
    with homeo.client_for(add_key(homeo, "default", role="member")) as member:
        assert_error(member.post("/v1/memory/backup"), 403, "forbidden")
        assert_error(member.post("/v1/memory/restore", content=b"x", headers=TAR), 403,
                     "forbidden")


def test_another_tenant_neither_sees_nor_overwrites_the_memory(homeo: Served) -> None:
    api = homeo.client
    api.post("/v1/collections/kb/documents", json={"text": "Secret plans.", "title": "plans"})
    remember(homeo, "The vault code is 4711")
    ours = api.post("/v1/memory/backup").content
    with homeo.client_for(add_key(homeo, "globex", role="admin")) as globex:
        theirs = globex.post("/v1/memory/backup")
        assert theirs.status_code == 200
        assert b"Secret" not in theirs.content and b"4711" not in theirs.content
        assert b'"tenant": "globex"' in members(theirs.content)["manifest.json"]
        refused = globex.post("/v1/memory/restore", content=ours, headers=TAR)
        message = assert_error(refused, 409, "conflict")
        assert "tenant 'default'" in message and "Secret" not in refused.text
        assert documents(homeo, globex) == []
    assert documents(homeo) == ["plans"]


@pytest.mark.parametrize("damage,status,words", [
    ("flip", 400, "chunks.jsonl does not match its sha256"),
    ("cut", 400, "the body is truncated"),
    ("junk", 400, "not a readable tar file"),
    ("type", 415, "application/x-tar"),
])
def test_a_damaged_backup_is_a_clear_4xx_and_changes_nothing(
        homeo: Served, damage: str, status: int, words: str) -> None:
    api = homeo.client
    api.post("/v1/collections/kb/documents", json={"text": "Kept as it was.", "title": "kept"})
    good = api.post("/v1/memory/backup").content
    api.post("/v1/collections/kb/documents", json={"text": "Newer.", "title": "newer"})
    files = members(good)
    headers = TAR
    if damage == "flip":
        chunks = bytearray(files["chunks.jsonl"])
        chunks[len(chunks) // 2] ^= 1
        files["chunks.jsonl"] = bytes(chunks)
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as archive:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        body = out.getvalue()
    elif damage == "cut":
        body = good[:1500]
    elif damage == "junk":
        body = b"not a tar" * 200
    else:
        body, headers = good, {"content-type": "application/json"}
    answer = api.post("/v1/memory/restore", content=body, headers=headers)
    message = assert_error(answer, status, "bad_request" if status == 400 else
                           "unsupported_media_type")
    assert words in message and "/tmp" not in message
    assert sorted(documents(homeo)) == ["kept", "newer"]


def test_a_sensitive_tenants_backup_is_encrypted_and_needs_the_key_file(
        serve: Callable[..., Served], tmp_path: Path) -> None:
    key_file = tmp_path / "secrets" / "encryption.keys"
    keyfile.new_key_file(key_file)
    audit_key = tmp_path / "secrets" / "audit.key"
    generate_key(audit_key)
    keyed = serve(with_worker=False, audit_key_file=audit_key, encryption_key_file=key_file)
    keyed.runtime.models.add("embedding", HashingEmbedder())
    api = keyed.client
    assert api.put("/v1/tenant/encryption", json={"sensitive": True}).status_code == 200
    assert api.post("/v1/collections/kb/documents",
                    json={"text": "The vault code is PLANTED-7731.", "title": "vault"}
                    ).status_code == 201
    taken = api.post("/v1/memory/backup")
    assert taken.status_code == 200, taken.text
    assert b"PLANTED" not in taken.content and b"vault code" not in taken.content
    assert b'"encryption"' in members(taken.content)["manifest.json"]
    api.post("/v1/collections/kb/documents", json={"text": "Added after.", "title": "later"})
    back = api.post("/v1/memory/restore", content=taken.content, headers=TAR)
    assert back.status_code == 200, back.text
    assert documents(keyed) == ["vault"]
    hits = api.get("/v1/collections/kb/search", params={"q": "vault code"}).json()["results"]
    assert [hit["title"] for hit in hits] == ["vault"]

    bare = serve(with_worker=False)  # another database, no key file
    refused = bare.client.post("/v1/memory/restore", content=taken.content, headers=TAR)
    message = assert_error(refused, 409, "conflict")
    assert "HOMEO_ENCRYPTION_KEY_FILE" in message and "PLANTED" not in refused.text
    assert documents(bare) == []
