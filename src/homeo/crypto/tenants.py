"""Tenants' data keys: made when a tenant is first marked sensitive, kept
wrapped in the store, unwrapped once per process and cached, and used to seal
what the store writes for that tenant (the store's `Cipher`) and the blobs
`encrypt`/`decrypt` give the backup module.

The key file is read again when a data key is wrapped by a KEK this process
has not seen (another process rotated) and before wrapping a new data key, so
a long-running server follows a rotation without a restart.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from pathlib import Path

from homeo.audit import AuditLog, Event
from homeo.crypto import envelope, keyfile
from homeo.crypto.errors import DecryptionFailed, KeyUnavailable
from homeo.crypto.keyfile import KeyRing
from homeo.ids import new_id
from homeo.store.base import Store
from homeo.store.models import DataKeyRecord, TenantEncryption

BLOB_MAGIC = b"HOMEOENC1"


def open_cipher(key_file: Path | None, store: Store) -> TenantCipher | None:
    """The cipher HOMEO_ENCRYPTION_KEY_FILE's keys drive, installed as the
    store's (so it seals sensitive tenants' runs); None when it is unset."""
    if key_file is None:
        return None
    cipher = TenantCipher(store, key_file)
    store.cipher = cipher
    return cipher


class TenantCipher:
    """Seals and opens tenants' values with their data keys (the store's
    `Cipher`), and wraps new data keys with the key file's current KEK."""

    def __init__(self, store: Store, key_file: Path,
                 now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.key_file = key_file
        self.now = now
        self.ring: KeyRing = keyfile.load(key_file)
        self._data_keys: dict[str, tuple[str, bytes]] = {}  # id -> (tenant, key)
        self._lock = threading.Lock()

    # --- the store's Cipher -------------------------------------------------
    def seal(self, tenant_id: str, data_key_id: str, purpose: str, plain: bytes) -> bytes:
        return envelope.seal(self.data_key(tenant_id, data_key_id), tenant_id, data_key_id,
                             purpose, plain)

    def open(self, tenant_id: str, data_key_id: str, purpose: str, sealed: bytes) -> bytes:
        return envelope.open_sealed(self.data_key(tenant_id, data_key_id), tenant_id,
                                    data_key_id, purpose, sealed)

    # --- blobs (backups) ----------------------------------------------------
    def encrypt(self, tenant_id: str, data: bytes, purpose: str = "blob") -> bytes:
        """`data` sealed with the tenant's data key (made now if it has none):
        `HOMEOENC1 || len(key id) || key id || nonce || AES-GCM(data)`."""
        key_id = self.ensure_data_key(tenant_id)
        sealed = self.seal(tenant_id, key_id, purpose, data)
        return BLOB_MAGIC + bytes([len(key_id)]) + key_id.encode() + sealed

    def decrypt(self, tenant_id: str, blob: bytes, purpose: str = "blob") -> bytes:
        if not blob.startswith(BLOB_MAGIC) or len(blob) < len(BLOB_MAGIC) + 1:
            raise DecryptionFailed("not a homeo encrypted blob (no HOMEOENC1 header)")
        size = blob[len(BLOB_MAGIC)]
        start = len(BLOB_MAGIC) + 1
        key_id = blob[start:start + size].decode(errors="replace")
        return self.open(tenant_id, key_id, purpose, blob[start + size:])

    # --- keys ---------------------------------------------------------------
    def data_key(self, tenant_id: str, data_key_id: str) -> bytes:
        cached = self._data_keys.get(data_key_id)
        if cached is not None and cached[0] == tenant_id:
            return cached[1]
        record = self.store.get_data_key(data_key_id)
        if record is None or record.tenant_id != tenant_id:
            raise KeyUnavailable(f"data key {data_key_id} of tenant {tenant_id} is not in the"
                                 " store: the data was sealed by another database's key")
        if record.kek_id not in self.ring.keys:  # rotated by another process since we loaded
            self.ring = keyfile.load(self.key_file)
        key = envelope.unwrap(self.ring.get(record.kek_id), record.kek_id, tenant_id,
                              data_key_id, base64.b64decode(record.wrapped))
        with self._lock:
            self._data_keys[data_key_id] = (tenant_id, key)
        return key

    def adopt(self, record: DataKeyRecord) -> None:
        """Make a data key this store does not hold (a backup's wrapped record)
        usable by this process, once it unwraps with the key file's KEK:
        KeyUnavailable or DecryptionFailed otherwise. Nothing is stored; the
        caller registers the record (`put_data_key`) with what it seals."""
        if record.kek_id not in self.ring.keys:
            self.ring = keyfile.load(self.key_file)
        try:
            wrapped = base64.b64decode(record.wrapped, validate=True)
        except ValueError:
            raise DecryptionFailed(f"data key {record.id} is not a wrapped key (not base64)"
                                   ) from None
        key = envelope.unwrap(self.ring.get(record.kek_id), record.kek_id, record.tenant_id,
                              record.id, wrapped)
        with self._lock:
            self._data_keys[record.id] = (record.tenant_id, key)

    def ensure_data_key(self, tenant_id: str) -> str:
        """The tenant's data key id, after making and storing one if it has none."""
        with self.store.atomic():
            setting = self.store.tenant_encryption(tenant_id)
            if setting is not None and setting.data_key_id is not None:
                return setting.data_key_id
            self.ring = keyfile.load(self.key_file)  # wrap with the newest current KEK
            data_key, key_id = envelope.new_data_key(), new_id("dk", self.now())
            wrapped = envelope.wrap(self.ring.get(self.ring.current).public_key(),
                                    self.ring.current, tenant_id, key_id, data_key)
            self.store.put_data_key(DataKeyRecord(
                id=key_id, tenant_id=tenant_id, kek_id=self.ring.current,
                wrapped=base64.b64encode(wrapped).decode(), created_at=self.now()))
            self.store.set_tenant_encryption(TenantEncryption(
                tenant_id=tenant_id, sensitive=False if setting is None else setting.sensitive,
                data_key_id=key_id, updated_at=self.now()))
        with self._lock:
            self._data_keys[key_id] = (tenant_id, data_key)
        return key_id

    def set_sensitive(self, tenant_id: str, sensitive: bool) -> TenantEncryption:
        """Mark the tenant's runs to be kept encrypted (or, from now on, not:
        what was sealed stays sealed and readable). Call inside `atomic()`
        with the audit entry that records it."""
        key_id = self.ensure_data_key(tenant_id)
        setting = TenantEncryption(tenant_id=tenant_id, sensitive=sensitive,
                                   data_key_id=key_id, updated_at=self.now())
        self.store.set_tenant_encryption(setting)
        return setting


def change_encryption(cipher: TenantCipher, audit: AuditLog | None, tenant_id: str,
                      sensitive: bool, actor: str) -> TenantEncryption:
    """Mark the tenant sensitive (or not), with its `tenant.encryption.changed`
    audit entry in the same transaction."""
    with cipher.store.atomic():
        setting = cipher.set_sensitive(tenant_id, sensitive)
        if audit is not None:
            audit.record(tenant_id, Event("tenant.encryption.changed", actor,
                                          f"tenant:{tenant_id}",
                                          {"sensitive": sensitive,
                                           "data_key_id": setting.data_key_id}))
    return setting
