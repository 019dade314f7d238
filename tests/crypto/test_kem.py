"""The hybrid X25519+ML-KEM-768 KEM and the envelope around it: round trips,
and every changed byte, wrong key or wrong context refused."""

from __future__ import annotations

import pytest

from homeo.crypto import envelope, kem
from homeo.crypto.errors import DecryptionFailed
from homeo.crypto.kem import HybridPrivateKey


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def test_both_sides_derive_the_same_secret() -> None:
    private = HybridPrivateKey.generate()
    secret, ciphertext = kem.encapsulate(private.public_key())
    assert len(secret) == 32 and len(ciphertext) == kem.CIPHERTEXT_SIZE == 1120
    assert kem.decapsulate(private, ciphertext) == secret
    again, other = kem.encapsulate(private.public_key())
    assert again != secret and other != ciphertext  # fresh every time


def test_a_key_read_back_from_its_raw_bytes_decapsulates() -> None:
    private = HybridPrivateKey.generate()
    secret, ciphertext = kem.encapsulate(private.public_key())
    assert kem.decapsulate(HybridPrivateKey.from_raw(*private.raw()), ciphertext) == secret


@pytest.mark.parametrize("at", [0, 31, 32, 500, 1119])  # the X25519 half, then ML-KEM's
def test_a_changed_ciphertext_gives_another_secret(at: int) -> None:
    private = HybridPrivateKey.generate()
    secret, ciphertext = kem.encapsulate(private.public_key())
    assert kem.decapsulate(private, flip(ciphertext, at)) != secret


def test_another_private_key_gives_another_secret() -> None:
    secret, ciphertext = kem.encapsulate(HybridPrivateKey.generate().public_key())
    assert kem.decapsulate(HybridPrivateKey.generate(), ciphertext) != secret


def test_a_short_ciphertext_is_refused() -> None:
    with pytest.raises(ValueError, match="1120 bytes"):
        kem.decapsulate(HybridPrivateKey.generate(), b"\x00" * 100)


def test_a_wrapped_data_key_unwraps_only_with_its_kek_tenant_and_id() -> None:
    kek, other = HybridPrivateKey.generate(), HybridPrivateKey.generate()
    data_key = envelope.new_data_key()
    wrapped = envelope.wrap(kek.public_key(), "kek-a", "acme", "dk_1", data_key)
    assert envelope.unwrap(kek, "kek-a", "acme", "dk_1", wrapped) == data_key
    refusals = [
        (other, "kek-a", "acme", "dk_1", wrapped),  # the wrong KEK
        (kek, "kek-a", "globex", "dk_1", wrapped),  # copied to another tenant
        (kek, "kek-a", "acme", "dk_2", wrapped),  # under another id
        (kek, "kek-b", "acme", "dk_1", wrapped),  # claimed by another KEK id
        (kek, "kek-a", "acme", "dk_1", flip(wrapped, len(wrapped) - 1)),  # the GCM tag
        (kek, "kek-a", "acme", "dk_1", flip(wrapped, 1)),  # the KEM ciphertext
        (kek, "kek-a", "acme", "dk_1", wrapped[:-1]),  # cut short
    ]
    for private, kek_id, tenant, key_id, blob in refusals:
        with pytest.raises(DecryptionFailed, match=key_id):
            envelope.unwrap(private, kek_id, tenant, key_id, blob)


def test_sealed_data_opens_only_unchanged_in_its_place() -> None:
    key = envelope.new_data_key()
    sealed = envelope.seal(key, "acme", "dk_1", "runs.input", b"the plan")
    assert b"the plan" not in sealed
    assert envelope.open_sealed(key, "acme", "dk_1", "runs.input", sealed) == b"the plan"
    for at in (0, 12, len(sealed) - 1):  # nonce, ciphertext, tag
        with pytest.raises(DecryptionFailed, match="dk_1"):
            envelope.open_sealed(key, "acme", "dk_1", "runs.input", flip(sealed, at))
    for tenant, purpose in (("globex", "runs.input"), ("acme", "runs.output")):
        with pytest.raises(DecryptionFailed):
            envelope.open_sealed(key, tenant, "dk_1", purpose, sealed)
    with pytest.raises(DecryptionFailed):
        envelope.open_sealed(envelope.new_data_key(), "acme", "dk_1", "runs.input", sealed)
