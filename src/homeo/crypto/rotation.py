"""Key rotation: a new key-encryption key (KEK) re-wraps every data key; the
data they sealed is not touched.

Crash-safe by order:
1. the key file is replaced (atomically) by one whose current KEK is new and
   which still holds every older KEK;
2. each data key is re-wrapped, one row at a time, only if it is still
   wrapped by the KEK it was read with;
3. only when no data key is wrapped by an older KEK are those dropped from
   the key file.
A crash after 1 or during 2 leaves every data key wrapped by a KEK the file
holds; running `rotate` again makes another KEK and finishes the job.

One gap: a server that wraps a tenant's first data key (the tenant is being
marked sensitive) with the old KEK in the instant between step 2's last
re-wrap and step 3 leaves that key wrapped by a KEK step 3 drops. Rotate
while no tenant is being marked sensitive, and keep a copy of the key file
from before the rotation until `homeo crypto status` (which names any KEK
that data keys need and the file lacks) shows none missing.
"""

from __future__ import annotations

import base64
import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from homeo.crypto import envelope, keyfile
from homeo.crypto.errors import KeyFileError
from homeo.store.base import Store


@dataclass
class Rotation:
    new_kek: str
    rewrapped: int = 0
    dropped: list[str] = field(default_factory=list)


@contextmanager
def _alone(key_file: Path) -> Iterator[None]:
    """One rotation of a key file at a time: two would re-wrap each other's
    keys back and forth."""
    descriptor = os.open(key_file.with_name(f".{key_file.name}.lock"),
                         os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KeyFileError(f"another `homeo crypto rotate` of {key_file} is running;"
                               " wait for it to finish") from None
        yield
    finally:
        os.close(descriptor)


def rotate(store: Store, key_file: Path, *, batch: int = 100,
           after_rewrap: Callable[[int], None] | None = None) -> Rotation:
    """Rotate to a fresh KEK. `after_rewrap(count)` is called after each
    re-wrapped data key (progress; the crash test stops the process there)."""
    with _alone(key_file):
        return _rotate(store, key_file, batch, after_rewrap)


def _rotate(store: Store, key_file: Path, batch: int,
            after_rewrap: Callable[[int], None] | None) -> Rotation:
    ring = keyfile.load(key_file).with_new_current()
    keyfile.save(key_file, ring)
    current = ring.get(ring.current)
    public = current.public_key()
    result = Rotation(ring.current)
    while True:
        pending = store.data_keys_not_wrapped_by(ring.current, limit=batch)
        if not pending:
            break
        for record in pending:
            data_key = envelope.unwrap(ring.get(record.kek_id), record.kek_id,
                                       record.tenant_id, record.id,
                                       base64.b64decode(record.wrapped))
            wrapped = envelope.wrap(public, ring.current, record.tenant_id, record.id,
                                    data_key)
            if store.rewrap_data_key(record.id, record.kek_id, ring.current,
                                     base64.b64encode(wrapped).decode()):
                result.rewrapped += 1
                if after_rewrap is not None:
                    after_rewrap(result.rewrapped)
    in_use = set(store.data_keys_per_kek())
    retired = {kek for kek in ring.keys if kek != ring.current and kek not in in_use}
    if retired:
        keyfile.save(key_file, ring.without(retired))
        result.dropped = sorted(retired)
    return result
