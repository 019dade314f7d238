"""Backups of a tenant marked sensitive, on SQLite and PostgreSQL: the
archive holds no plain text (its data files are encrypted with the tenant's
data key), a restore gives the text back sealed again and searchable, also
into a fresh database with the same key file; without the key file, or with
another one, a restore is refused and nothing changes."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from homeo.backends import Backends, open_backends
from homeo.crypto import keyfile
from homeo.crypto.tenants import TenantCipher, open_cipher
from homeo.memory import backup_crypt
from homeo.memory.agent_memory import open_agent_memory_store
from homeo.memory.backup import (
    CHUNKS,
    MANIFEST,
    BackupInvalid,
    BackupKeyError,
    restore,
    verified,
)
from homeo.memory.store import NewChunk, NewDocument, open_store
from tests.crypto.test_sealed_memories import memory_rows
from tests.memory.test_backup import (
    MODEL,
    _rewrite,
    add_document,
    populate,
    remember,
    state,
    take_backup,
    vector,
)

PLANT = "PLANTED-4471-vault"
SECRET_WORDS = ["the", "vault", "code", "is", PLANT]


def keyed(backends: Backends, key_file: Path, *, sensitive: bool = True) -> TenantCipher:
    """The backends' store given the key file's cipher, tenant acme marked sensitive."""
    if not key_file.exists():
        keyfile.new_key_file(key_file)
    cipher = open_cipher(key_file, backends.store)
    assert cipher is not None
    if sensitive:
        cipher.set_sensitive("acme", True)
    return cipher


def add_secret(backends: Backends, collection: str = "secrets") -> None:
    """A document, one chunk a word, holding the planted word (hashes of the
    text, as ingestion makes them, not the text)."""
    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    text = " ".join(SECRET_WORDS)
    pieces = [NewChunk(i, word, i, i + len(word), digest(word), vector(20 + i))
              for i, word in enumerate(SECRET_WORDS)]
    open_store(backends).put_document("acme", collection, NewDocument(
        "the safe", "notes/safe", "text", text, digest(text)), pieces, MODEL)


def plant(backends: Backends) -> None:
    """Acme's memory, with the planted word in a document, its chunks and a memory,
    and enough chunks that each data file is many frames long."""
    populate(backends, "acme")
    add_secret(backends)
    add_document(backends, "acme", "bulk", [f"filler{n} words" for n in range(300)], seed=30)
    remember(backends, "acme", f"the vault code is {PLANT}", seed=21)


def raw_tables(backends: Backends) -> str:
    return memory_rows(backends, backends.url, "memory_documents", "memory_chunks",
                       "agent_memories")


def do_restore(backends: Backends, path: Path) -> object:
    return restore(open_store(backends), open_agent_memory_store(backends), path, "acme")


def finds_the_plant(backends: Backends) -> None:
    store = open_store(backends)
    found = store.text_search("acme", "secrets", ["vault"], 5)
    texts = [hit.text for hit in store.get_chunks("acme", "secrets", [i for i, _ in found])]
    assert "vault" in texts and all("vault" in text for text in texts)
    memories = open_agent_memory_store(backends)
    [(memory_id, _)] = memories.text_search("acme", None, ["vault"], 5, now=300.0)
    memory = memories.get("acme", memory_id)
    assert memory is not None and memory.text == f"the vault code is {PLANT}"


@pytest.fixture
def small_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames of 1 KiB, so a test's files are many frames long."""
    monkeypatch.setattr(backup_crypt, "FRAME_BYTES", 1024)


def test_a_sensitive_tenants_backup_is_encrypted_and_restores_sealed_and_searchable(
        backends: Backends, tmp_path: Path, small_frames: None) -> None:
    cipher = keyed(backends, tmp_path / "k.keys")
    plant(backends)
    before = state(backends, "acme")
    summary = take_backup(backends, "acme", tmp_path / "acme.tar")

    raw = summary.path.read_bytes()
    assert PLANT.encode() not in raw and b"walrus" not in raw and b"release branch" not in raw
    with verified(summary.path, runs=backends.store) as checked:
        encryption = checked.manifest.encryption
        assert encryption is not None
        setting = backends.store.tenant_encryption("acme")
        assert setting is not None and encryption.data_key_id == setting.data_key_id
        assert encryption.kek_id == cipher.ring.current
        assert checked.manifest.files[CHUNKS].size > 10 * 1024  # many frames
        assert checked.register is None  # this database holds the data key

    open_store(backends).delete_collection("acme", "secrets")
    remember(backends, "acme", "something new about lyon", seed=40)
    assert state(backends, "acme") != before
    do_restore(backends, summary.path)
    assert state(backends, "acme") == before
    finds_the_plant(backends)
    rows = raw_tables(backends)
    assert PLANT not in rows and f"homeo:enc:v1:{encryption.data_key_id}:" in rows


def test_a_plain_tenants_backup_is_not_encrypted(backends: Backends, tmp_path: Path) -> None:
    keyed(backends, tmp_path / "k.keys", sensitive=False)
    add_secret(backends)
    summary = take_backup(backends, "acme", tmp_path / "acme.tar")
    assert PLANT.encode() in summary.path.read_bytes()
    with verified(summary.path) as checked:
        assert checked.manifest.encryption is None


def test_an_encrypted_backup_restores_into_a_fresh_database_with_the_same_key_file(
        backends: Backends, tmp_path: Path, small_frames: None) -> None:
    source = open_backends(f"sqlite:///{tmp_path / 'source.db'}")
    try:
        keyed(source, tmp_path / "k.keys")
        plant(source)
        before = state(source, "acme")
        summary = take_backup(source, "acme", tmp_path / "acme.tar")
    finally:
        source.close()
    keyed(backends, tmp_path / "k.keys", sensitive=False)
    with verified(summary.path, runs=backends.store) as checked:
        assert checked.register is not None  # the backup's data key, new to this database
        data_key = checked.register.id
    keyed(backends, tmp_path / "k.keys")  # sensitive here too: its own data key
    do_restore(backends, summary.path)
    assert state(backends, "acme") == before
    finds_the_plant(backends)
    registered = backends.store.get_data_key(data_key)
    assert registered is not None and registered.tenant_id == "acme"
    assert PLANT not in raw_tables(backends)


REFUSALS: dict[str, tuple[Callable[[Backends, Path], None], str]] = {
    "no key file": (lambda backends, folder: None,
                    r"encrypted with data key dk_\S+, wrapped by key-encryption key kek-\S+:"
                    r" set HOMEO_ENCRYPTION_KEY_FILE"),
    "another key file": (lambda backends, folder: keyed(backends, folder / "other.keys",
                                                        sensitive=False),
                         r"cannot be decrypted here: key-encryption key kek-\S+ is not in the"
                         r" key file"),
}


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_an_encrypted_backup_without_its_key_is_refused_and_nothing_changes(
        backends: Backends, tmp_path: Path, refusal: str) -> None:
    source = open_backends(f"sqlite:///{tmp_path / 'source.db'}")
    try:
        keyed(source, tmp_path / "k.keys")
        plant(source)
        summary = take_backup(source, "acme", tmp_path / "acme.tar")
    finally:
        source.close()
    prepare, problem = REFUSALS[refusal]
    prepare(backends, tmp_path)
    add_document(backends, "acme", "docs", ["kettle", "otter"], seed=2)  # what must stay
    before = state(backends, "acme")
    with tarfile.open(summary.path) as archive:
        member = archive.extractfile(MANIFEST)
        assert member is not None
        data_key = json.loads(member.read())["encryption"]["data_key_id"]
    with pytest.raises(BackupKeyError, match=problem):
        do_restore(backends, summary.path)
    assert state(backends, "acme") == before
    assert backends.store.get_data_key(data_key) is None


def test_a_backup_of_a_sensitive_tenant_needs_the_key_file(
        make_backends: Callable[..., Backends], tmp_path: Path) -> None:
    writer, bare = make_backends(), make_backends()
    keyed(writer, tmp_path / "k.keys")
    add_secret(writer)
    with pytest.raises(BackupKeyError, match="set HOMEO_ENCRYPTION_KEY_FILE"):
        take_backup(bare, "acme", tmp_path / "acme.tar")
    assert not (tmp_path / "acme.tar").exists()


def _refit(source: Path, target: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """A copy of the backup whose files `change` edits, the manifest's sums made to fit."""
    with tarfile.open(source) as archive:
        files = {}
        for member in archive.getmembers():
            data = archive.extractfile(member)
            assert data is not None
            files[member.name] = data.read()
    change(files)
    manifest = json.loads(files[MANIFEST])
    for name in manifest["files"]:
        manifest["files"][name] = {"size": len(files[name]),
                                   "sha256": hashlib.sha256(files[name]).hexdigest()}
    files[MANIFEST] = json.dumps(manifest).encode()
    return _rewrite(source, target, lambda name, _: files[name])


def _drop_last_frame(files: dict[str, bytes]) -> None:
    size = 1024 + 28
    chunks = files[CHUNKS]
    files[CHUNKS] = chunks[: (len(chunks) - 1) // size * size]


def _swap_frames(files: dict[str, bytes]) -> None:
    size = 1024 + 28
    chunks = files[CHUNKS]
    files[CHUNKS] = chunks[size:2 * size] + chunks[:size] + chunks[2 * size:]


def _flip_a_byte(files: dict[str, bytes]) -> None:
    chunks = bytearray(files[CHUNKS])
    chunks[len(chunks) // 2] ^= 1
    files[CHUNKS] = bytes(chunks)


def _other_file(files: dict[str, bytes]) -> None:
    files[CHUNKS] = files["documents.jsonl"]


ALTERED = {
    "the last frame cut off": (_drop_last_frame, "chunks.jsonl frame \\d+ does not decrypt"),
    "two frames swapped": (_swap_frames, "chunks.jsonl frame 0 does not decrypt"),
    "a flipped byte": (_flip_a_byte, "chunks.jsonl frame \\d+ does not decrypt"),
    "another file's frames": (_other_file, "chunks.jsonl frame 0 does not decrypt"),
}


@pytest.mark.parametrize("alteration", sorted(ALTERED))
def test_an_encrypted_backup_altered_with_fitting_sums_is_refused(
        backends: Backends, tmp_path: Path, small_frames: None, alteration: str) -> None:
    keyed(backends, tmp_path / "k.keys")
    plant(backends)
    take_backup(backends, "acme", tmp_path / "good.tar")
    add_document(backends, "acme", "docs", ["zebra stripes"], seed=11)
    before = state(backends, "acme")
    change, problem = ALTERED[alteration]
    bad = _refit(tmp_path / "good.tar", tmp_path / "bad.tar", change)
    with pytest.raises(BackupInvalid, match=problem):
        do_restore(backends, bad)
    assert state(backends, "acme") == before
