"""The encryption of a memory backup's data files, for a tenant marked
sensitive (homeo.crypto): a backup of its memory is no more plain text at
rest than the rows it came from.

Each data file is a run of frames, `nonce(12) || AES-GCM(up to frame_bytes
of the file)(+16)`, sealed with the tenant's data key by the store's cipher.
A frame's associated data names the backup, the file, the frame's place and
whether it is the last, so frames moved between files or backups, reordered,
or cut off after a whole frame do not open. The manifest (not encrypted: it
holds counts and model names) records the data key's id and its wrapped
record, wrapped by the key-encryption key (KEK) and safe to store, so a
restore into a database that has never seen the key (a fresh one, with the
same key file) registers it again.

Frames are written as the staging files are (no plain text on disk) and
opened as the checked copies are read (the restore's private copies stay
sealed); the manifest's sha256 covers the sealed bytes.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from homeo.crypto.errors import CryptoError, DecryptionFailed
from homeo.memory.backup_errors import BackupInvalid, BackupKeyError
from homeo.store.models import DataKeyRecord
from homeo.store.sealed import SealedDataError

SCHEME = "aes-256-gcm-frames-v1"
FRAME_BYTES = 1024 * 1024
_NONCE, _TAG = 12, 16


class BackupCipher(Protocol):
    """What the backup needs of the store's cipher (homeo.crypto.tenants.TenantCipher)."""

    def seal(self, tenant_id: str, data_key_id: str, purpose: str, plain: bytes) -> bytes: ...

    def open(self, tenant_id: str, data_key_id: str, purpose: str, sealed: bytes) -> bytes: ...

    def data_key(self, tenant_id: str, data_key_id: str) -> bytes: ...

    def adopt(self, record: DataKeyRecord) -> None: ...


class EncryptionEntry(BaseModel):
    """The manifest's record of how the data files are encrypted."""

    model_config = ConfigDict(extra="forbid", strict=True)

    scheme: Literal["aes-256-gcm-frames-v1"]
    data_key_id: str = Field(min_length=1)
    kek_id: str = Field(min_length=1)
    wrapped_data_key: str = Field(min_length=1)  # base64, as the store keeps it
    data_key_created_at: float
    backup_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    frame_bytes: int = Field(ge=1024, le=16 * 1024 * 1024)

    def record(self, tenant_id: str) -> DataKeyRecord:
        return DataKeyRecord(id=self.data_key_id, tenant_id=tenant_id, kek_id=self.kek_id,
                             wrapped=self.wrapped_data_key, created_at=self.data_key_created_at)


@dataclass(frozen=True, slots=True)
class ArchiveKey:
    """Seals and opens the frames of one backup's data files."""

    cipher: BackupCipher
    tenant_id: str
    entry: EncryptionEntry

    def _purpose(self, name: str, index: int, last: bool) -> str:
        return (f"memory-backup\0{self.entry.backup_id}\0{name}\0{index}\0"
                f"{'last' if last else 'more'}")

    def seal(self, name: str, index: int, last: bool, plain: bytes) -> bytes:
        return self.cipher.seal(self.tenant_id, self.entry.data_key_id,
                                self._purpose(name, index, last), plain)

    def open(self, name: str, index: int, last: bool, sealed: bytes) -> bytes:
        try:
            return self.cipher.open(self.tenant_id, self.entry.data_key_id,
                                    self._purpose(name, index, last), sealed)
        except DecryptionFailed:
            raise BackupInvalid(
                f"{name} frame {index} does not decrypt with data key"
                f" {self.entry.data_key_id}: the file was altered, cut short, or taken from"
                " another backup") from None


def key_for_backup(runs: Any, tenant_id: str) -> ArchiveKey | None:
    """The key a backup of the tenant is written with: None when the tenant
    is not marked sensitive (`runs`: the run store, which knows, and holds
    the cipher)."""
    if runs is None:
        return None
    try:
        sealer = runs.sealer_for(tenant_id)
    except SealedDataError as problem:
        raise BackupKeyError(f"tenant {tenant_id}'s memory is kept encrypted and its backup"
                             f" would be too: {problem}") from None
    if sealer is None:
        return None
    record = runs.get_data_key(sealer.key_id)
    if record is None:
        raise BackupKeyError(f"tenant {tenant_id}'s data key {sealer.key_id} is not in the"
                             " store: the tenant's encryption setting names a key it lost")
    entry = EncryptionEntry(scheme=SCHEME, data_key_id=record.id, kek_id=record.kek_id,
                            wrapped_data_key=record.wrapped,
                            data_key_created_at=float(record.created_at),
                            backup_id=secrets.token_hex(16), frame_bytes=FRAME_BYTES)
    return ArchiveKey(runs.cipher, tenant_id, entry)


def key_for_restore(runs: Any, tenant_id: str,
                    entry: EncryptionEntry) -> tuple[ArchiveKey, DataKeyRecord | None]:
    """The key that opens the backup, after checking it unwraps with this
    server's key file, and the wrapped data key record to register with the
    restore when this database does not hold it. BackupKeyError names the
    key missing; nothing is written."""
    cipher = None if runs is None else runs.cipher
    if cipher is None:
        raise BackupKeyError(
            f"the backup of tenant {tenant_id} is encrypted with data key {entry.data_key_id},"
            f" wrapped by key-encryption key {entry.kek_id}: set HOMEO_ENCRYPTION_KEY_FILE to"
            f" the key file that holds {entry.kek_id}. Nothing was restored")
    stored = runs.get_data_key(entry.data_key_id)
    if stored is not None and stored.tenant_id != tenant_id:
        raise BackupKeyError(f"data key {entry.data_key_id} of the backup belongs to another"
                             " tenant in this database: nothing was restored")
    register = None
    try:
        if stored is None:
            register = entry.record(tenant_id)
            cipher.adopt(register)
        cipher.data_key(tenant_id, entry.data_key_id)
    except CryptoError as problem:
        raise BackupKeyError(f"the backup of tenant {tenant_id} cannot be decrypted here:"
                             f" {problem}. Nothing was restored") from None
    return ArchiveKey(cipher, tenant_id, entry), register


class FrameWriter:
    """Seals what is written to it into frames, handing each to `out`."""

    def __init__(self, key: ArchiveKey, name: str, out: Callable[[bytes], None]) -> None:
        self.key, self.name, self._out = key, name, out
        self._pending = bytearray()
        self._index = 0

    def write(self, data: bytes) -> None:
        self._pending += data
        size = self.key.entry.frame_bytes
        # A frame is sealed "more" only once a byte after it exists: the last
        # one, written by `close`, is never full-size-and-unmarked.
        while len(self._pending) > size:
            self._emit(bytes(self._pending[:size]), last=False)
            del self._pending[:size]

    def close(self) -> None:
        self._emit(bytes(self._pending), last=True)  # an empty file still has its last frame
        self._pending.clear()

    def _emit(self, plain: bytes, *, last: bool) -> None:
        self._out(self.key.seal(self.name, self._index, last, plain))
        self._index += 1


class _FrameReader(io.RawIOBase):
    """The plain bytes of a file of frames, opened as they are read."""

    def __init__(self, path: Path, name: str, key: ArchiveKey) -> None:
        self.key, self.name = key, name
        self._source = path.open("rb")
        self._size = path.stat().st_size
        self._plain = b""
        self._index = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._plain and not self._done:
            self._next()
        count = min(len(buffer), len(self._plain))
        buffer[:count] = self._plain[:count]
        self._plain = self._plain[count:]
        return count

    def _next(self) -> None:
        size = self.key.entry.frame_bytes
        sealed = self._source.read(size + _NONCE + _TAG)
        if len(sealed) < _NONCE + _TAG:
            raise BackupInvalid(f"{self.name} ends before its last frame: the file is cut short")
        last = self._source.tell() >= self._size
        self._plain = self.key.open(self.name, self._index, last, sealed)
        self._index += 1
        self._done = last

    def close(self) -> None:
        self._source.close()
        super().close()


def open_sealed_file(path: Path, name: str, key: ArchiveKey) -> IO[bytes]:
    """The checked copy at `path` (a file of frames), read as plain bytes."""
    return io.BufferedReader(_FrameReader(path, name, key), buffer_size=1024 * 1024)
