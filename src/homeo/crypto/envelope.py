"""Envelope encryption: data is sealed with a tenant's AES-256-GCM data key;
the data key is stored wrapped by a key-encryption key (KEK) through the
hybrid KEM, so rotating the KEK re-wraps 32-byte keys and never touches data.

A wrapped data key is `version(1) || KEM ciphertext(1120) || nonce(12) ||
AES-GCM(data key)(48)`; the AES key is the KEM's shared secret, and the
associated data names the tenant, the data key and the KEK, so a wrapped key
copied to another tenant's row or another id does not open. A sealed value
is `nonce(12) || AES-GCM(plaintext)`; its associated data names the tenant,
the data key and what the value is (a column), for the same reason.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from homeo.crypto import kem
from homeo.crypto.errors import DecryptionFailed
from homeo.crypto.kem import HybridPrivateKey, HybridPublicKey

WRAP_VERSION = b"\x01"
NONCE = 12
DATA_KEY_SIZE = 32


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _wrap_context(tenant_id: str, data_key_id: str, kek_id: str) -> bytes:
    return b"homeo data key v1\0" + "\0".join((tenant_id, data_key_id, kek_id)).encode()


def wrap(public: HybridPublicKey, kek_id: str, tenant_id: str, data_key_id: str,
         data_key: bytes) -> bytes:
    shared, ciphertext = kem.encapsulate(public)
    nonce = os.urandom(NONCE)
    sealed = AESGCM(shared).encrypt(nonce, data_key,
                                    _wrap_context(tenant_id, data_key_id, kek_id))
    return WRAP_VERSION + ciphertext + nonce + sealed


def unwrap(private: HybridPrivateKey, kek_id: str, tenant_id: str, data_key_id: str,
           wrapped: bytes) -> bytes:
    head = 1 + kem.CIPHERTEXT_SIZE
    if wrapped[:1] != WRAP_VERSION or len(wrapped) != head + NONCE + DATA_KEY_SIZE + 16:
        raise DecryptionFailed(f"data key {data_key_id} is not a wrapped key of this version")
    nonce, sealed = wrapped[head:head + NONCE], wrapped[head + NONCE:]
    try:
        shared = kem.decapsulate(private, wrapped[1:head])
        return AESGCM(shared).decrypt(nonce, sealed,
                                      _wrap_context(tenant_id, data_key_id, kek_id))
    except (InvalidTag, ValueError):
        raise DecryptionFailed(
            f"data key {data_key_id} of tenant {tenant_id} does not unwrap with"
            f" key-encryption key {kek_id}: the wrapped key was changed or belongs elsewhere"
        ) from None


def _data_context(tenant_id: str, data_key_id: str, purpose: str) -> bytes:
    return b"homeo data v1\0" + "\0".join((tenant_id, data_key_id, purpose)).encode()


def seal(data_key: bytes, tenant_id: str, data_key_id: str, purpose: str,
         plain: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(data_key).encrypt(nonce, plain,
                                            _data_context(tenant_id, data_key_id, purpose))


def open_sealed(data_key: bytes, tenant_id: str, data_key_id: str, purpose: str,
                sealed: bytes) -> bytes:
    try:
        return AESGCM(data_key).decrypt(sealed[:NONCE], sealed[NONCE:],
                                        _data_context(tenant_id, data_key_id, purpose))
    except (InvalidTag, ValueError):
        raise DecryptionFailed(
            f"a {purpose} value of tenant {tenant_id} sealed with data key {data_key_id} does"
            " not decrypt: it was changed, or copied from another tenant or place"
        ) from None
