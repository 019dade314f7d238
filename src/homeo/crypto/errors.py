"""What can go wrong with encryption at rest, as types the API and CLI turn
into messages that say which key is needed."""

from __future__ import annotations


class CryptoError(Exception):
    """Base of encryption-at-rest errors."""


class KeyFileError(CryptoError):
    """The key file is missing, unreadable, too open, or not a homeo key file."""


class KeyUnavailable(CryptoError):
    """A key needed to decrypt (a data key, or the key-encryption key that
    wraps it) is not at hand. The message names the key id."""


class DecryptionFailed(CryptoError):
    """The ciphertext or its wrapped key was changed, or belongs elsewhere:
    the AES-GCM tag did not verify. Never returns plaintext or garbage."""
