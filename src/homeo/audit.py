"""The audit log: security events of each tenant (keys made and revoked, runs
submitted and cancelled, access denied), appended in the same transaction as
the change they record, and provable with a public key alone.

Each entry carries the SHA-256 of its fields and of the entry before it (a
hash chain from a genesis of zeros), and an ML-DSA-65 (FIPS 204) signature
of that hash. The tenant's head (its last seq and hash) is signed apart, under
another label, so a log whose last entries were removed no longer matches it.
`verify_log` walks a tenant's entries and names the first one that was
changed, removed, reordered, inserted, signed by another key, or left out at
the end. What it cannot see: the whole database rolled back to an earlier
copy (its head signed then): keep the head `homeo audit verify` prints, and
compare.

The private key is a PEM file that `homeo audit keygen` writes (mode 0600)
next to its public key (`.pub`); HOMEO_AUDIT_KEY_FILE names it, and homeo
refuses one inside the data directory: a copy of the data must not carry the
power to rewrite its own log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey

from homeo.store.base import Store
from homeo.store.models import AuditEntry, AuditHead

GENESIS = "0" * 64
_ENTRY_LABEL = b"homeo audit entry v1\n"
_HEAD_LABEL = b"homeo audit head v1\n"


class AuditKeyError(Exception):
    """The audit key file is missing, unreadable or not an ML-DSA-65 key."""


@dataclass(frozen=True)
class Event:
    # key.created, key.revoked, run.submitted, run.cancelled, access.denied,
    # safety.block|approve|redact|flag (safety_event), ...
    kind: str
    actor: str  # key:<id>, user:<tenant>:<sub>, cli, guards
    subject: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def canary_event(canary: Any) -> Event:
    """A champion/challenger canary that ended (homeo.engine.canary.Canary):
    `agent.promoted`, `agent.rolled_back` or `agent.canary_stopped`, with its
    versions and the evidence it was judged on."""
    kind = {"promoted": "agent.promoted", "rolled_back": "agent.rolled_back"}.get(
        canary.status, "agent.canary_stopped")
    return Event(kind, canary.ended_by or "", f"agent:{canary.agent}",
                 {"champion": canary.champion, "challenger": canary.challenger,
                  "share": canary.share, "evidence": canary.evidence})


def safety_event(actor: str, subject: str, screening: dict[str, Any]) -> Event:
    """What the safety guards did to a text (a Screening's JSON) as an event:
    the action, the boundary and each flagged verdict's guard, score,
    threshold, action and kinds of span; never the text or what it matched."""
    verdicts = [{"guard": verdict["guard"], "score": verdict["score"],
                 "threshold": verdict["threshold"], "action": verdict["action"],
                 "kinds": sorted({span["kind"] for span in verdict["spans"]})}
                for verdict in screening["verdicts"]]
    return Event(f"safety.{screening['action']}", actor, subject,
                 {"boundary": screening["boundary"], "verdicts": verdicts})


def entry_hash(tenant_id: str, seq: int, at: float, kind: str, actor: str, subject: str,
               details: dict[str, Any], prev_hash: str) -> str:
    """The SHA-256 (hex) of an entry's fields in canonical JSON."""
    body = json.dumps(
        {"tenant_id": tenant_id, "seq": seq, "at": at, "kind": kind, "actor": actor,
         "subject": subject, "details": details, "prev_hash": prev_hash},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _head_message(tenant_id: str, seq: int, hash_: str) -> bytes:
    return _HEAD_LABEL + json.dumps([tenant_id, seq, hash_]).encode()


def key_id_of(public: MLDSA65PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(path: Path) -> Path:
    """Write a new private key to `path` (mode 0600; refused if it exists) and
    its public key to `path` + `.pub`. Returns the public key's path."""
    private = MLDSA65PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    public_path = Path(f"{path}.pub")
    public_path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return public_path


def load_public_key(path: Path) -> MLDSA65PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as error:
        raise AuditKeyError(f"cannot read the audit public key {path}: {error}") from None
    if not isinstance(key, MLDSA65PublicKey):
        raise AuditKeyError(f"{path} is not an ML-DSA-65 public key")
    return key


class AuditSigner:
    """Seals entries: their hash, its signature, and the new head's signature."""

    def __init__(self, private: MLDSA65PrivateKey) -> None:
        self.private = private
        self.public = private.public_key()
        self.key_id = key_id_of(self.public)

    @classmethod
    def load(cls, path: Path) -> AuditSigner:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as error:
            raise AuditKeyError(
                f"cannot read the audit key {path}: {error}; `homeo audit keygen PATH` makes one"
            ) from None
        if not isinstance(key, MLDSA65PrivateKey):
            raise AuditKeyError(f"{path} is not an ML-DSA-65 private key;"
                                " `homeo audit keygen PATH` makes one")
        return cls(key)

    def seal(self, tenant_id: str, event: Event, at: float
             ) -> Callable[[int, str], tuple[AuditEntry, AuditHead]]:
        def sealed(seq: int, prev_hash: str) -> tuple[AuditEntry, AuditHead]:
            digest = entry_hash(tenant_id, seq, at, event.kind, event.actor, event.subject,
                                event.details, prev_hash)
            entry = AuditEntry(
                tenant_id=tenant_id, seq=seq, at=at, kind=event.kind, actor=event.actor,
                subject=event.subject, details=event.details, prev_hash=prev_hash, hash=digest,
                key_id=self.key_id,
                signature=_b64(self.private.sign(_ENTRY_LABEL + digest.encode())),
            )
            head = AuditHead(tenant_id=tenant_id, seq=seq, hash=digest, key_id=self.key_id,
                             signature=_b64(self.private.sign(_head_message(tenant_id, seq,
                                                                            digest))))
            return entry, head

        return sealed


class AuditLog:
    """Appends events to tenants' logs. Call `record` inside `store.atomic()`
    (or `Backends.atomic()`) with the change it records."""

    def __init__(self, store: Store, signer: AuditSigner,
                 now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.signer = signer
        self.now = now

    def record(self, tenant_id: str, event: Event) -> AuditEntry:
        return self.store.append_audit(tenant_id,
                                       self.signer.seal(tenant_id, event, self.now()))


def open_audit_log(key_file: Path | None, store: Store) -> AuditLog | None:
    """The audit log HOMEO_AUDIT_KEY_FILE signs; None when it is unset."""
    return None if key_file is None else AuditLog(store, AuditSigner.load(key_file))


@dataclass(frozen=True)
class Verdict:
    tenant_id: str
    entries: int  # how many were checked
    first_bad: int | None = None  # the seq of the first bad entry (or where one is missing)
    problem: str = ""
    head: AuditHead | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def verify_log(tenant_id: str, entries: Sequence[AuditEntry], head: AuditHead | None,
               public: MLDSA65PublicKey) -> Verdict:
    """Check a tenant's entries (in the order the store lists them) and head
    with the public key alone; the verdict names the first bad entry."""
    key_id = key_id_of(public)
    prev, expected = GENESIS, 1
    for entry in entries:
        def bad(problem: str, at: int = entry.seq) -> Verdict:
            return Verdict(tenant_id, expected - 1, at, problem, head)

        if entry.seq != expected:
            return bad(f"entry {expected} is missing: entry {entry.seq} comes next"
                       " (removed, reordered or inserted)", expected)
        if entry.prev_hash != prev:
            return bad(f"entry {entry.seq} does not follow entry {entry.seq - 1}"
                       " (inserted, reordered, or the one before it was changed)")
        recomputed = entry_hash(entry.tenant_id, entry.seq, entry.at, entry.kind, entry.actor,
                                entry.subject, entry.details, entry.prev_hash)
        if entry.tenant_id != tenant_id or recomputed != entry.hash:
            return bad(f"entry {entry.seq} was changed: its fields do not match its hash")
        if entry.key_id != key_id:
            return bad(f"entry {entry.seq} is signed by key {entry.key_id}, not by this"
                       f" public key ({key_id})")
        if not _verifies(public, entry.signature, _ENTRY_LABEL + entry.hash.encode()):
            return bad(f"entry {entry.seq}'s signature does not verify")
        prev, expected = entry.hash, expected + 1
    last = expected - 1
    if head is None:
        if last:
            return Verdict(tenant_id, last, last, "the log has entries but no signed head", head)
        return Verdict(tenant_id, 0, head=head)
    if head.key_id != key_id or not _verifies(public, head.signature,
                                               _head_message(tenant_id, head.seq, head.hash)):
        return Verdict(tenant_id, last, head.seq, "the head's signature does not verify", head)
    if head.seq != last or head.hash != prev:
        return Verdict(tenant_id, last, last + 1,
                       f"the log ends at entry {last} but its signed head is entry {head.seq}:"
                       " entries were removed from the end", head)
    return Verdict(tenant_id, last, head=head)


def _verifies(public: MLDSA65PublicKey, signature: str, message: bytes) -> bool:
    try:
        public.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
