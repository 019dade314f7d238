"""The key file: the hybrid key-encryption keys (KEKs) that wrap tenants'
data keys. It lives outside the data dir (a copy of the database must not
carry what decrypts it), mode 0600, written whole and renamed into place so
a crash never leaves half a file.

It holds one current KEK (new data keys are wrapped by it) and, during a
rotation, the retired ones whose data keys are not yet re-wrapped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from homeo.crypto.errors import KeyFileError, KeyUnavailable
from homeo.crypto.kem import HybridPrivateKey

FORMAT = "homeo encryption keys v1"


def kek_id_of(key: HybridPrivateKey) -> str:
    pk_x, pk_m = key.public_key().raw()
    return "kek-" + hashlib.sha256(pk_x + pk_m).hexdigest()[:16]


@dataclass
class KeyRing:
    """KEKs by id; `current` wraps new data keys."""

    current: str
    keys: dict[str, HybridPrivateKey] = field(default_factory=dict)

    def get(self, kek_id: str) -> HybridPrivateKey:
        key = self.keys.get(kek_id)
        if key is None:
            raise KeyUnavailable(
                f"key-encryption key {kek_id} is not in the key file (it holds"
                f" {', '.join(self.keys)}): point HOMEO_ENCRYPTION_KEY_FILE at the file that"
                f" holds {kek_id}")
        return key

    def with_new_current(self) -> KeyRing:
        key = HybridPrivateKey.generate()
        kek_id = kek_id_of(key)
        return KeyRing(kek_id, {kek_id: key, **self.keys})

    def without(self, kek_ids: set[str]) -> KeyRing:
        if self.current in kek_ids:
            raise ValueError("the current key-encryption key cannot be dropped")
        return KeyRing(self.current, {k: v for k, v in self.keys.items() if k not in kek_ids})


def _encode(ring: KeyRing) -> bytes:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    keys = []
    for kek_id, key in ring.keys.items():
        x25519, mlkem_seed = key.raw()
        keys.append({"id": kek_id, "x25519": b64(x25519), "mlkem768_seed": b64(mlkem_seed)})
    return json.dumps({"format": FORMAT, "current": ring.current, "keys": keys},
                      indent=1).encode()


def new_key_file(path: Path) -> KeyRing:
    """Write a key file with one fresh KEK to `path` (0600; refused if it exists)."""
    key = HybridPrivateKey.generate()
    ring = KeyRing(kek_id_of(key), {kek_id_of(key): key})
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(_encode(ring))
        out.flush()
        os.fsync(out.fileno())
    _fsync_dir(path.parent)
    return ring


def save(path: Path, ring: KeyRing) -> None:
    """Replace the key file with `ring`: written beside it, fsynced, renamed
    over it, so a reader sees the old file or the new one, never half."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(_encode(ring))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def load(path: Path) -> KeyRing:
    try:
        mode = path.stat().st_mode
        text = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"cannot read the encryption key file {path}: {error.strerror};"
                           " `homeo crypto keygen PATH` makes one") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"the encryption key file {path} is readable by others"
                           f" (mode {stat.S_IMODE(mode):o}): `chmod 600 {path}`")
    try:
        document = json.loads(text)
        if document.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT!r}")
        keys = {}
        for entry in document["keys"]:
            key = HybridPrivateKey.from_raw(base64.b64decode(entry["x25519"], validate=True),
                                            base64.b64decode(entry["mlkem768_seed"],
                                                             validate=True))
            if kek_id_of(key) != entry["id"]:
                raise ValueError(f"key {entry['id']} does not match its id")
            keys[entry["id"]] = key
        ring = KeyRing(document["current"], keys)
        ring.get(ring.current)
    except (ValueError, KeyError, TypeError, AttributeError, KeyUnavailable) as error:
        raise KeyFileError(f"{path} is not a homeo encryption key file: {error}") from None
    return ring


def _fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
