"""A hybrid key encapsulation: X25519 and ML-KEM-768 (FIPS 203), combined so
the shared secret stays secret while either one holds.

Encapsulating to a recipient's public key (pk_x, pk_m) gives two shared
secrets and two ciphertexts: ss_m, ct_m from ML-KEM-768, and ss_x from an
X25519 exchange with a fresh ephemeral key whose public half ct_x is the
X25519 "ciphertext". The key both sides derive is

    HKDF-SHA256(ikm  = ss_m || ss_x,
                salt = LABEL,
                info = ct_m || ct_x || pk_m || pk_x)

as in X-Wing (draft-connolly-cfrg-xwing-kem) and the hybrid TLS key schedule
(draft-ietf-tls-hybrid-design): concatenating the secrets means an attacker
must break both; binding the ciphertexts and the public keys into the KDF
means a ciphertext cannot be replayed against another key or mixed with
another ciphertext's half, even if one of the two components turns out
malleable. X-Wing leaves ct_m and pk_m out because ML-KEM already binds
them; homeo includes them anyway (a few extra bytes of hashing per wrap).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

LABEL = b"homeo hybrid kem v1: X25519+ML-KEM-768"
X25519_CT = 32
MLKEM768_CT = 1088
CIPHERTEXT_SIZE = X25519_CT + MLKEM768_CT
SHARED_SECRET_SIZE = 32


@dataclass(frozen=True)
class HybridPublicKey:
    x25519: X25519PublicKey
    mlkem: MLKEM768PublicKey

    def raw(self) -> tuple[bytes, bytes]:
        return self.x25519.public_bytes_raw(), self.mlkem.public_bytes_raw()


@dataclass(frozen=True)
class HybridPrivateKey:
    x25519: X25519PrivateKey
    mlkem: MLKEM768PrivateKey  # private_bytes_raw() is its 64-byte seed

    @classmethod
    def generate(cls) -> HybridPrivateKey:
        return cls(X25519PrivateKey.generate(), MLKEM768PrivateKey.generate())

    @classmethod
    def from_raw(cls, x25519: bytes, mlkem_seed: bytes) -> HybridPrivateKey:
        return cls(X25519PrivateKey.from_private_bytes(x25519),
                   MLKEM768PrivateKey.from_seed_bytes(mlkem_seed))

    def raw(self) -> tuple[bytes, bytes]:
        return self.x25519.private_bytes_raw(), self.mlkem.private_bytes_raw()

    def public_key(self) -> HybridPublicKey:
        return HybridPublicKey(self.x25519.public_key(), self.mlkem.public_key())


def _combine(ss_m: bytes, ss_x: bytes, ct_m: bytes, ct_x: bytes,
             public: HybridPublicKey) -> bytes:
    pk_x, pk_m = public.raw()
    return HKDF(algorithm=hashes.SHA256(), length=SHARED_SECRET_SIZE, salt=LABEL,
                info=ct_m + ct_x + pk_m + pk_x).derive(ss_m + ss_x)


def encapsulate(public: HybridPublicKey) -> tuple[bytes, bytes]:
    """A fresh shared secret for `public`'s holder, and the ciphertext
    (ct_x || ct_m, 1,120 bytes) that lets it derive the same secret."""
    ephemeral = X25519PrivateKey.generate()
    ss_x = ephemeral.exchange(public.x25519)
    ct_x = ephemeral.public_key().public_bytes_raw()
    ss_m, ct_m = public.mlkem.encapsulate()
    return _combine(ss_m, ss_x, ct_m, ct_x, public), ct_x + ct_m


def decapsulate(private: HybridPrivateKey, ciphertext: bytes) -> bytes:
    """The shared secret `ciphertext` carries. A changed ciphertext gives a
    different secret (ML-KEM rejects implicitly), which the AEAD then refuses."""
    if len(ciphertext) != CIPHERTEXT_SIZE:
        raise ValueError(f"a hybrid KEM ciphertext is {CIPHERTEXT_SIZE} bytes,"
                         f" not {len(ciphertext)}")
    ct_x, ct_m = ciphertext[:X25519_CT], ciphertext[X25519_CT:]
    ss_x = private.x25519.exchange(X25519PublicKey.from_public_bytes(ct_x))
    ss_m = private.mlkem.decapsulate(ct_m)
    return _combine(ss_m, ss_x, ct_m, ct_x, private.public_key())
