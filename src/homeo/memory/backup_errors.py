"""What can go wrong with a memory backup or restore, as types the CLI and
the API turn into messages (homeo.memory.backup)."""

from __future__ import annotations


class BackupError(Exception):
    """A backup could not be written or read; the message says why."""


class BackupInvalid(BackupError):
    """The archive is not a whole, unaltered backup this homeo can read:
    nothing was restored."""


class RestoreConflict(BackupError):
    """The backup cannot go into this store as it is (another tenant, or ids
    another tenant holds): nothing was restored."""


class BackupKeyError(BackupError):
    """A key the backup needs is not at hand: the encryption key file is not
    set, or it does not hold the key-encryption key that wraps the tenant's
    data key. The message names the key; nothing was written or restored."""
