"""How the store keeps a sensitive tenant's values: `homeo:enc:v1:<data key
id>:<base64>` in place of the text (or, in a JSON column, as a JSON string).
The store only recognises the form and names the key; a `Cipher` (given by
the runtime: homeo.crypto.tenants.TenantCipher) does the cryptography, so the
store never holds a key-encryption key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Protocol

from homeo.store.base import StoreError

PREFIX = "homeo:enc:v1:"


class SealedDataError(StoreError):
    """Sensitive data meets a store that has no cipher: it would be written in
    plain text, or read as ciphertext. The message names the data key."""


class Cipher(Protocol):
    def seal(self, tenant_id: str, data_key_id: str, purpose: str, plain: bytes) -> bytes:
        """`plain` encrypted with the tenant's data key `data_key_id`."""

    def open(self, tenant_id: str, data_key_id: str, purpose: str, sealed: bytes) -> bytes:
        """The plaintext, or a typed error (homeo.crypto.errors) naming the key needed."""


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def data_key_id(value: str) -> str:
    return value[len(PREFIX):].split(":", 1)[0]


class Sealer:
    """Seals the values of one tenant with its data key (one per write)."""

    def __init__(self, cipher: Cipher, tenant_id: str, key_id: str) -> None:
        self.cipher, self.tenant_id, self.key_id = cipher, tenant_id, key_id

    def text(self, value: str | None, purpose: str) -> str | None:
        if value is None:
            return None
        sealed = self.cipher.seal(self.tenant_id, self.key_id, purpose, value.encode())
        return f"{PREFIX}{self.key_id}:{base64.b64encode(sealed).decode()}"

    def json(self, value: Any, purpose: str) -> Any:
        """A JSON column's value: the sealed JSON text, as a JSON string."""
        if value is None:
            return None
        return self.text(json.dumps(value, separators=(",", ":")), purpose)


def open_text(cipher: Cipher | None, tenant_id: str, value: Any, purpose: str) -> Any:
    """`value` as written: a sealed value decrypted, any other returned as is."""
    if not is_sealed(value):
        return value
    key_id, _, body = value[len(PREFIX):].partition(":")
    if cipher is None:
        raise SealedDataError(
            f"tenant {tenant_id}'s {purpose} is encrypted with data key {key_id}: set"
            " HOMEO_ENCRYPTION_KEY_FILE to the key file that wraps it")
    return cipher.open(tenant_id, key_id, purpose, base64.b64decode(body)).decode()


def open_json(cipher: Cipher | None, tenant_id: str, value: Any, purpose: str) -> Any:
    if not is_sealed(value):
        return value
    return json.loads(open_text(cipher, tenant_id, value, purpose))


class SealedTexts:
    """One kind of text (`purpose`, e.g. a column) kept sealed for the tenants
    the run store marks sensitive: for stores beside it (agent memory,
    collections) that share its database, its setting and its cipher."""

    def __init__(self, runs: Any, purpose: str) -> None:  # runs: homeo.store.sql.SQLStore
        self.runs = runs
        self.purpose = purpose

    def stored(self, tenant_id: str, text: str) -> str:
        """`text` as the row keeps it: sealed for a sensitive tenant."""
        sealer = None if self.runs is None else self.runs.sealer_for(tenant_id)
        return text if sealer is None else str(sealer.text(text, self.purpose))

    def sealing(self, tenant_id: str) -> Callable[[str], str]:
        """`stored` for the many texts of one write (a restore): the tenant's
        setting read once, not once a text."""
        sealer = None if self.runs is None else self.runs.sealer_for(tenant_id)
        if sealer is None:
            return lambda text: text
        return lambda text: str(sealer.text(text, self.purpose))

    def plain(self, tenant_id: str, stored: str) -> str:
        cipher = None if self.runs is None else self.runs.cipher
        return str(open_text(cipher, tenant_id, stored, self.purpose))
