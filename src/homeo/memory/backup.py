"""Backup and restore of one tenant's memory: knowledge collections, their
documents, chunks and vectors, and agent memories.

A backup is one tar file:

    manifest.json        format version, homeo version, tenant, time, counts,
                         each collection's embedding model and dimension, and
                         the size and sha256 of every other file
    collections.jsonl    one collection a line
    documents.jsonl      one document a line, with its text
    chunks.jsonl         one chunk a line, oldest first
    chunk_vectors.f32    the chunks' vectors in that order, little-endian float32
    memories.jsonl       one agent memory a line, oldest first
    memory_vectors.f32   their vectors in that order

Every row is read in one snapshot (`Dialect.snapshot`), so a backup taken
while writers go on holds each document whole or not at all. Texts a
sensitive tenant's rows keep sealed are opened: the records hold plain text,
so full text can be made again and the backup restores into another
database. Full-text entries are not saved: restore makes them again from the
plain text, and writes the text through the stores' sealing (sealed again
when the tenant is sensitive in the target database).

For a tenant marked sensitive the data files are encrypted with its data key
(homeo.memory.backup_crypt), and the manifest says with which; the sha256
sums are of the encrypted bytes, so a restore checks them before it needs
the key, and opens the frames as it reads its checked copies.

Restore copies each file out of the archive into a private folder while it
checks its size and sha256, then parses every record and checks every cross
reference and vector length against the manifest, all before it touches the
store; then it replaces the tenant's memory in one transaction. Collections
get new ids, so their versions never match an in-process index built before
(homeo.memory.vectors rebuilds). Document ids are kept; chunk and memory ids
are numbered anew (a memory's `superseded_by` follows its memory).

The errors (homeo.memory.backup_errors) are imported from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from homeo import __version__
from homeo.backends import Backends
from homeo.crypto.errors import CryptoError
from homeo.db.dialect import Dialect, clock
from homeo.ids import new_id
from homeo.memory.agent_memory import SQLAgentMemoryStore, open_agent_memory_store
from homeo.memory.backup_crypt import (
    ArchiveKey,
    EncryptionEntry,
    FrameWriter,
    key_for_backup,
    key_for_restore,
    open_sealed_file,
)
from homeo.memory.backup_errors import (
    BackupError,
    BackupInvalid,
    BackupKeyError,
    RestoreConflict,
)
from homeo.memory.sql import SQLKnowledgeStore
from homeo.memory.store import open_store
from homeo.store.models import DataKeyRecord
from homeo.store.sealed import SealedDataError

FORMAT = "homeo-memory-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
FLOAT32 = 4
_COPY = 1024 * 1024
_BATCH = 500

COLLECTIONS = "collections.jsonl"
DOCUMENTS = "documents.jsonl"
CHUNKS = "chunks.jsonl"
CHUNK_VECTORS = "chunk_vectors.f32"
MEMORIES = "memories.jsonl"
MEMORY_VECTORS = "memory_vectors.f32"
DATA_FILES = (COLLECTIONS, DOCUMENTS, CHUNKS, CHUNK_VECTORS, MEMORIES, MEMORY_VECTORS)

# (stage, done, total): what a progress bar shows.
Progress = Callable[[str, int, int], None]


# --- records ---------------------------------------------------------------


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CollectionRecord(_Record):
    name: str = Field(min_length=1)
    model: str | None
    dimensions: int | None = Field(ge=1)
    created_at: float


class DocumentRecord(_Record):
    id: str = Field(min_length=1)
    collection: str
    title: str | None
    source: str | None
    format: str
    text: str
    chars: int = Field(ge=0)
    chunks: int = Field(ge=0)
    content_hash: str
    created_at: float
    updated_at: float


class ChunkRecord(_Record):
    document: str
    position: int = Field(ge=0)
    text: str
    start: int
    end: int
    content_hash: str
    model: str
    dimensions: int = Field(ge=1)


class MemoryRecord(_Record):
    id: int
    scope: str
    text: str
    subject: str | None
    importance: float
    seen: int = Field(ge=1)
    created_at: float
    updated_at: float
    last_used_at: float
    expires_at: float | None
    superseded_by: int | None
    superseded_at: float | None
    model: str
    dimensions: int = Field(ge=1)


class FileEntry(_Record):
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class CollectionEntry(_Record):
    name: str
    model: str | None
    dimensions: int | None
    documents: int = Field(ge=0)
    chunks: int = Field(ge=0)


class ModelEntry(_Record):
    model: str
    dimensions: int = Field(ge=1)


class Counts(_Record):
    collections: int = Field(ge=0)
    documents: int = Field(ge=0)
    chunks: int = Field(ge=0)
    memories: int = Field(ge=0)


class Manifest(_Record):
    format: Literal["homeo-memory-backup"]
    format_version: int
    homeo_version: str
    tenant: str
    created_at: float
    counts: Counts
    collections: list[CollectionEntry]
    memory_models: list[ModelEntry]
    files: dict[str, FileEntry]
    # Set when the data files are encrypted (a tenant marked sensitive).
    encryption: EncryptionEntry | None = None


@dataclass(frozen=True, slots=True)
class BackupSummary:
    path: Path
    tenant: str
    counts: Counts
    bytes: int

    def as_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "tenant": self.tenant,
                "counts": self.counts.model_dump(), "bytes": self.bytes}


# --- writing ---------------------------------------------------------------


def write_member(archive: tarfile.TarFile, name: str, source: Path) -> None:
    """Put the bytes of `source` into the archive as `name`."""
    info = tarfile.TarInfo(name)
    info.size = source.stat().st_size
    info.mode = 0o600
    info.mtime = int(time.time())
    with source.open("rb") as data:
        archive.addfile(info, data)


class _HashedFile:
    """A staging file that counts and hashes what goes into it: what is
    written to it, or, given a key, the frames that seal it."""

    def __init__(self, path: Path, key: ArchiveKey | None) -> None:
        self.path = path
        self._file: IO[bytes] = path.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self._frames = None if key is None else FrameWriter(key, path.name, self._put)

    def _put(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def write(self, data: bytes) -> None:
        if self._frames is None:
            self._put(data)
        else:
            self._frames.write(data)

    def line(self, record: BaseModel) -> None:
        self.write(record.model_dump_json().encode() + b"\n")

    def close(self) -> FileEntry:
        if self._frames is not None:
            self._frames.close()
        self._file.close()
        return FileEntry(size=self.size, sha256=self._hash.hexdigest())


def backup(knowledge: SQLKnowledgeStore, memories: SQLAgentMemoryStore, tenant_id: str,
           path: Path, *, now: float | None = None,
           progress: Progress | None = None) -> BackupSummary:
    """Write the tenant's memory to the tar file `path` (replaced whole: a
    crash leaves the file as it was, or no file), its data files encrypted
    when the tenant is marked sensitive (BackupKeyError when the key to open
    its sealed texts, or to encrypt, is not at hand)."""
    if knowledge.db is not memories.db:
        raise BackupError("the knowledge and agent memory stores must share one database")
    at = clock(now)
    path = Path(path)
    key = key_for_backup(knowledge.documents.runs, tenant_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="homeo-backup-", dir=path.parent) as staging:
        files = {name: _HashedFile(Path(staging) / name, key) for name in DATA_FILES}
        try:
            counts, collections, models = _dump(knowledge, memories, tenant_id, files,
                                                progress)
        except (SealedDataError, CryptoError) as problem:
            raise BackupKeyError(f"tenant {tenant_id}'s memory is kept encrypted and cannot"
                                 f" be read: {problem}") from None
        finally:
            entries = {name: file.close() for name, file in files.items()}
        manifest = Manifest(format=FORMAT, format_version=FORMAT_VERSION,
                            homeo_version=__version__, tenant=tenant_id, created_at=at,
                            counts=counts, collections=collections, memory_models=models,
                            files=entries, encryption=None if key is None else key.entry)
        manifest_path = Path(staging) / MANIFEST
        manifest_path.write_text(manifest.model_dump_json(indent=2))
        partial = Path(staging) / "backup.tar"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as archive:
            write_member(archive, MANIFEST, manifest_path)
            for name in DATA_FILES:
                write_member(archive, name, files[name].path)
        os.chmod(partial, 0o600)  # a tenant's documents and memories: its owner's only
        with partial.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a crash
        finally:
            os.close(folder)
    return BackupSummary(path, tenant_id, counts, path.stat().st_size)


def _dump(knowledge: SQLKnowledgeStore, memories: SQLAgentMemoryStore, tenant_id: str,
          files: dict[str, _HashedFile],
          progress: Progress | None) -> tuple[Counts, list[CollectionEntry], list[ModelEntry]]:
    """Every row of the tenant, read in one snapshot, into the staging files,
    sealed texts opened."""
    database: Dialect = knowledge.db
    sql = database.sql
    with database.snapshot() as db:
        heads = db.execute(sql(
            "SELECT id, name, model, dimensions, created_at FROM memory_collections"
            f" WHERE tenant_id = ? ORDER BY {database.name_order}"), (tenant_id,)).fetchall()
        names = {row["id"]: row["name"] for row in heads}
        total_chunks = int(db.execute(sql(
            "SELECT COUNT(*) AS n FROM memory_chunks WHERE tenant_id = ?"),
            (tenant_id,)).fetchone()["n"])
        total_memories = int(db.execute(sql(
            "SELECT COUNT(*) AS n FROM agent_memories WHERE tenant_id = ?"),
            (tenant_id,)).fetchone()["n"])
        per_collection = {name: CollectionEntry(name=name, model=None, dimensions=None,
                                                documents=0, chunks=0)
                          for name in names.values()}
        for row in heads:
            record = CollectionRecord(name=row["name"], model=row["model"],
                                      dimensions=row["dimensions"],
                                      created_at=float(row["created_at"]))
            files[COLLECTIONS].line(record)
            entry = per_collection[row["name"]]
            entry.model, entry.dimensions = record.model, record.dimensions

        documents = 0
        for row in _rows(db.execute(sql(
                "SELECT id, collection_id, title, source, format, text, chars, chunks,"
                " content_hash, created_at, updated_at FROM memory_documents"
                " WHERE tenant_id = ? ORDER BY id"), (tenant_id,))):
            name = names[row["collection_id"]]
            files[DOCUMENTS].line(DocumentRecord(
                id=row["id"], collection=name, title=row["title"], source=row["source"],
                format=row["format"], text=knowledge.documents.plain(tenant_id, row["text"]),
                chars=int(row["chars"]),
                chunks=int(row["chunks"]), content_hash=row["content_hash"],
                created_at=float(row["created_at"]), updated_at=float(row["updated_at"])))
            per_collection[name].documents += 1
            documents += 1

        chunks = 0
        for row in _rows(db.execute(sql(
                "SELECT collection_id, document_id, position, text, start_char, end_char,"
                " content_hash, model, dimensions, vector FROM memory_chunks"
                " WHERE tenant_id = ? ORDER BY id"), (tenant_id,))):
            files[CHUNKS].line(ChunkRecord(
                document=row["document_id"], position=int(row["position"]),
                text=knowledge.chunks.plain(tenant_id, row["text"]),
                start=int(row["start_char"]), end=int(row["end_char"]),
                content_hash=row["content_hash"], model=row["model"],
                dimensions=int(row["dimensions"])))
            files[CHUNK_VECTORS].write(bytes(row["vector"]))
            per_collection[names[row["collection_id"]]].chunks += 1
            chunks += 1
            if progress is not None and chunks % _BATCH == 0:
                progress("chunks", chunks, total_chunks)
        if progress is not None:
            progress("chunks", chunks, total_chunks)

        remembered = 0
        models: dict[tuple[str, int], None] = {}
        for row in _rows(db.execute(sql(
                "SELECT id, scope, text, subject, importance, seen, created_at, updated_at,"
                " last_used_at, expires_at, superseded_by, superseded_at, model, dimensions,"
                " vector FROM agent_memories WHERE tenant_id = ? ORDER BY id"), (tenant_id,))):
            record = MemoryRecord(
                id=int(row["id"]), scope=row["scope"],
                text=memories.texts.plain(tenant_id, row["text"]), subject=row["subject"],
                importance=float(row["importance"]), seen=int(row["seen"]),
                created_at=float(row["created_at"]), updated_at=float(row["updated_at"]),
                last_used_at=float(row["last_used_at"]),
                expires_at=_float_or_none(row["expires_at"]),
                superseded_by=None if row["superseded_by"] is None else int(row["superseded_by"]),
                superseded_at=_float_or_none(row["superseded_at"]), model=row["model"],
                dimensions=int(row["dimensions"]))
            files[MEMORIES].line(record)
            files[MEMORY_VECTORS].write(bytes(row["vector"]))
            models[(record.model, record.dimensions)] = None
            remembered += 1
            if progress is not None and remembered % _BATCH == 0:
                progress("memories", remembered, total_memories)
        if progress is not None:
            progress("memories", remembered, total_memories)
    counts = Counts(collections=len(heads), documents=documents, chunks=chunks,
                    memories=remembered)
    return (counts, list(per_collection.values()),
            [ModelEntry(model=model, dimensions=dims) for model, dims in models])


def _rows(cursor: Any) -> Iterator[Any]:
    while batch := cursor.fetchmany(_BATCH):
        yield from batch


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


# --- reading and checking ----------------------------------------------------


def read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    """The bytes of one member of the archive, to read."""
    data = archive.extractfile(member)
    if data is None:
        raise BackupInvalid(f"{member.name} in the backup is not a regular file")
    return data


@dataclass(frozen=True, slots=True)
class VerifiedBackup:
    """A backup whose every file and record was checked, its data files in
    `folder` (private copies, so what is restored is what was checked; still
    encrypted when the backup is, opened with `key` as they are read), and the
    wrapped data key to register with the restore when the store lacks it."""

    manifest: Manifest
    folder: Path
    key: ArchiveKey | None = None
    register: DataKeyRecord | None = None

    def open(self, name: str) -> IO[bytes]:
        """The plain bytes of the checked copy of data file `name`."""
        if self.key is None:
            return (self.folder / name).open("rb")
        return open_sealed_file(self.folder / name, name, self.key)


@contextmanager
def verified(path: Path, *, runs: Any = None,
             progress: Progress | None = None) -> Iterator[VerifiedBackup]:
    """Check everything in the backup at `path`; BackupInvalid names the first
    file and problem found. An encrypted backup is opened with the cipher of
    `runs` (the run store: it holds the data keys), BackupKeyError when it
    lacks the key. The checked copies are removed on leaving."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="homeo-restore-") as folder:
        manifest = _unpack(path, Path(folder))
        key, register = None, None
        if manifest.encryption is not None:
            key, register = key_for_restore(runs, manifest.tenant, manifest.encryption)
        checked = VerifiedBackup(manifest, Path(folder), key, register)
        total = manifest.counts.chunks + manifest.counts.memories
        done = 0
        for item in _plan(checked):
            if not isinstance(item, _Chunk | _Memory):
                continue
            done += 1
            if progress is not None and done % _BATCH == 0:
                progress("checking", done, total)
        if progress is not None:
            progress("checking", total, total)
        yield checked


def _unpack(path: Path, folder: Path) -> Manifest:
    try:
        archive = tarfile.open(path, "r:")
    except FileNotFoundError:
        raise BackupError(f"no backup at {path}") from None
    except (tarfile.TarError, OSError) as problem:
        raise BackupInvalid(f"{path} is not a homeo backup (not a readable tar file:"
                            f" {problem})") from None
    with archive:
        members: list[tarfile.TarInfo] = []
        try:
            while (member := archive.next()) is not None:
                members.append(member)
        except (tarfile.TarError, OSError) as problem:
            where = f": {members[-1].name} or what follows it is cut short" if members else ""
            raise BackupInvalid(f"{path} is truncated or damaged{where} ({problem})") from None
        _check_end(path, members)
        by_name: dict[str, tarfile.TarInfo] = {}
        for member in members:
            if member.name in by_name:
                raise BackupInvalid(f"{member.name} appears twice in the backup")
            if not member.isfile():
                raise BackupInvalid(f"{member.name} in the backup is not a regular file")
            by_name[member.name] = member
        if MANIFEST not in by_name:
            raise BackupInvalid(f"{path} has no {MANIFEST}: it is not a homeo memory backup")
        manifest = _manifest(archive, by_name[MANIFEST])
        expected = set(manifest.files)
        unknown = sorted(set(by_name) - expected - {MANIFEST})
        if unknown:
            raise BackupInvalid(f"{unknown[0]} in the backup is not listed in {MANIFEST}:"
                                " the backup was altered")
        missing = sorted(expected - set(by_name))
        if missing:
            raise BackupInvalid(f"{missing[0]} is missing from the backup ({MANIFEST} lists"
                                " it)")
        for name in DATA_FILES:
            _copy_checked(archive, by_name[name], manifest.files[name], folder / name)
    return manifest


def _check_end(path: Path, members: list[tarfile.TarInfo]) -> None:
    """The archive goes on past its last file to tar's end marker (two zero
    blocks): tarfile reads a file cut short after a member as if it were whole."""
    end = 0
    if members:
        last = members[-1]
        end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    with path.open("rb") as data:
        data.seek(end)
        marker = data.read(2 * tarfile.BLOCKSIZE)
    if marker != bytes(2 * tarfile.BLOCKSIZE):
        raise BackupInvalid(f"{path} is truncated: it ends before the archive's end marker")


def _manifest(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Manifest:
    if member.size > MAX_MANIFEST_BYTES:
        raise BackupInvalid(f"{MANIFEST} is {member.size} bytes: too large to be a manifest")
    try:
        raw = read_member(archive, member).read()
    except (tarfile.TarError, OSError) as problem:
        raise BackupInvalid(f"{MANIFEST} is truncated: {problem}") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as problem:
        raise BackupInvalid(f"{MANIFEST} is not valid JSON: {problem}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupInvalid(f"{MANIFEST} does not describe a homeo memory backup"
                            f" (its format is not {FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise BackupInvalid(
            f"{MANIFEST} says format version {data.get('format_version')!r}; this homeo"
            f" ({__version__}) reads version {FORMAT_VERSION}: restore it with the homeo"
            f" version that wrote it ({data.get('homeo_version')!r})")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as problem:
        raise BackupInvalid(f"{MANIFEST} is not valid: {_first_error(problem)}") from None
    unknown = sorted(set(manifest.files) - set(DATA_FILES))
    if unknown:
        raise BackupInvalid(f"{MANIFEST} lists {unknown[0]}, which is no file of format"
                            f" version {FORMAT_VERSION}")
    return manifest


def _copy_checked(archive: tarfile.TarFile, member: tarfile.TarInfo, entry: FileEntry,
                  target: Path) -> None:
    if member.size != entry.size:
        raise BackupInvalid(f"{member.name} is {member.size} bytes; {MANIFEST} says"
                            f" {entry.size}: the backup was truncated or altered")
    digest = hashlib.sha256()
    size = 0
    try:
        with read_member(archive, member) as source, target.open("wb") as copy:
            while block := source.read(_COPY):
                digest.update(block)
                copy.write(block)
                size += len(block)
    except (tarfile.TarError, OSError) as problem:
        raise BackupInvalid(f"{member.name} is truncated: {problem}") from None
    if size != entry.size:
        raise BackupInvalid(f"{member.name} holds {size} bytes; {MANIFEST} says"
                            f" {entry.size}: the backup is truncated")
    if digest.hexdigest() != entry.sha256:
        raise BackupInvalid(f"{member.name} does not match its sha256 in {MANIFEST}:"
                            " the file is corrupted")


def _first_error(problem: ValidationError) -> str:
    first = problem.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    return f"{where}: {first['msg']}"


def _lines(backup: VerifiedBackup, name: str, kind: type[_Record]) -> Iterator[Any]:
    with backup.open(name) as source:
        for number, line in enumerate(source, start=1):
            try:
                yield kind.model_validate_json(line)
            except ValidationError as problem:
                raise BackupInvalid(f"{name} line {number} is not a valid record:"
                                    f" {_first_error(problem)}") from None


class _VectorReader:
    """The vectors of one `.f32` file, read in the order of their records."""

    def __init__(self, backup: VerifiedBackup, name: str) -> None:
        self.name = name
        self._source = backup.open(name)

    def take(self, dimensions: int, owner: str) -> bytes:
        vector = self._source.read(dimensions * FLOAT32)
        if len(vector) != dimensions * FLOAT32:
            raise BackupInvalid(f"{self.name} ends before the vector of {owner}")
        return vector

    def finish(self) -> None:
        if self._source.read(1):
            raise BackupInvalid(f"{self.name} holds more bytes than its records' vectors")

    def close(self) -> None:
        self._source.close()


@dataclass(frozen=True, slots=True)
class _Chunk:
    collection: str
    record: ChunkRecord
    vector: bytes


@dataclass(frozen=True, slots=True)
class _Memory:
    record: MemoryRecord
    vector: bytes


def _plan(backup: VerifiedBackup) -> Iterator[CollectionRecord | DocumentRecord | _Chunk
                                               | _Memory]:
    """The backup's records in the order a restore writes them, each checked
    against the manifest and the records before it; BackupInvalid on the first
    that does not fit."""
    manifest = backup.manifest
    listed = {entry.name: entry for entry in manifest.collections}
    if len(listed) != len(manifest.collections):
        raise BackupInvalid(f"{MANIFEST} lists a collection twice")
    seen_collections: dict[str, CollectionRecord] = {}
    for record in _lines(backup, COLLECTIONS, CollectionRecord):
        entry = listed.get(record.name)
        if entry is None:
            raise BackupInvalid(f"{COLLECTIONS} holds collection {record.name!r},"
                                f" which {MANIFEST} does not list")
        if record.name in seen_collections:
            raise BackupInvalid(f"{COLLECTIONS} holds collection {record.name!r} twice")
        if (record.model, record.dimensions) != (entry.model, entry.dimensions):
            raise BackupInvalid(f"{COLLECTIONS}: collection {record.name!r} has model"
                                f" {record.model} ({record.dimensions} dimensions);"
                                f" {MANIFEST} says {entry.model} ({entry.dimensions})")
        seen_collections[record.name] = record
        yield record
    _count(COLLECTIONS, "collections", len(seen_collections), manifest.counts.collections)

    documents: dict[str, DocumentRecord] = {}
    per_collection: dict[str, int] = dict.fromkeys(seen_collections, 0)
    for record in _lines(backup, DOCUMENTS, DocumentRecord):
        if record.collection not in seen_collections:
            raise BackupInvalid(f"{DOCUMENTS}: document {record.id} is in collection"
                                f" {record.collection!r}, which {COLLECTIONS} does not hold")
        if record.id in documents:
            raise BackupInvalid(f"{DOCUMENTS} holds document {record.id} twice")
        documents[record.id] = record
        per_collection[record.collection] += 1
        yield record
    _count(DOCUMENTS, "documents", len(documents), manifest.counts.documents)
    for name, count in per_collection.items():
        _count(DOCUMENTS, f"documents of {name!r}", count, listed[name].documents)

    chunks_of: dict[str, int] = dict.fromkeys(documents, 0)
    chunks_in: dict[str, int] = dict.fromkeys(seen_collections, 0)
    vectors = _VectorReader(backup, CHUNK_VECTORS)
    try:
        for number, record in enumerate(_lines(backup, CHUNKS, ChunkRecord), start=1):
            document = documents.get(record.document)
            if document is None:
                raise BackupInvalid(f"{CHUNKS} line {number} belongs to document"
                                    f" {record.document}, which {DOCUMENTS} does not hold")
            collection = seen_collections[document.collection]
            if (record.model, record.dimensions) != (collection.model, collection.dimensions):
                raise BackupInvalid(
                    f"{CHUNKS} line {number}: a vector of {record.model} ({record.dimensions}"
                    f" dimensions) in collection {collection.name!r}, whose model {MANIFEST}"
                    f" says is {collection.model} ({collection.dimensions} dimensions)")
            chunks_of[record.document] += 1
            chunks_in[collection.name] += 1
            yield _Chunk(collection.name, record,
                         vectors.take(record.dimensions, f"{CHUNKS} line {number}"))
        vectors.finish()
    finally:
        vectors.close()
    _count(CHUNKS, "chunks", sum(chunks_of.values()), manifest.counts.chunks)
    for name, count in chunks_in.items():
        _count(CHUNKS, f"chunks of {name!r}", count, listed[name].chunks)
    for document_id, count in chunks_of.items():
        if count != documents[document_id].chunks:
            raise BackupInvalid(f"{CHUNKS} holds {count} chunks of document {document_id};"
                                f" the document has {documents[document_id].chunks}: it is"
                                " not whole")

    models = {(entry.model, entry.dimensions) for entry in manifest.memory_models}
    memory_ids: set[int] = set()
    vectors = _VectorReader(backup, MEMORY_VECTORS)
    try:
        for number, record in enumerate(_lines(backup, MEMORIES, MemoryRecord), start=1):
            if (record.model, record.dimensions) not in models:
                raise BackupInvalid(f"{MEMORIES} line {number}: a vector of {record.model}"
                                    f" ({record.dimensions} dimensions), a model {MANIFEST}"
                                    " does not list")
            if record.id in memory_ids:
                raise BackupInvalid(f"{MEMORIES} holds memory {record.id} twice")
            memory_ids.add(record.id)
            yield _Memory(record, vectors.take(record.dimensions, f"{MEMORIES} line {number}"))
        vectors.finish()
    finally:
        vectors.close()
    _count(MEMORIES, "memories", len(memory_ids), manifest.counts.memories)


def _count(name: str, what: str, found: int, listed: int) -> None:
    if found != listed:
        raise BackupInvalid(f"{name} holds {found} {what}; {MANIFEST} says {listed}")


# --- restoring ---------------------------------------------------------------


def restore(knowledge: SQLKnowledgeStore, memories: SQLAgentMemoryStore, path: Path,
            tenant_id: str, *, now: float | None = None, progress: Progress | None = None,
            in_transaction: Callable[[Manifest], None] | None = None) -> Manifest:
    """Replace the tenant's memory with the backup at `path`, in one
    transaction, after checking all of it (BackupInvalid, RestoreConflict,
    BackupKeyError: nothing changed). An encrypted backup is opened with the
    run store's cipher, and its wrapped data key registered with the rows
    when this database lacks it. `in_transaction` runs inside that
    transaction after the rows are written (an audit entry commits with them)."""
    if knowledge.db is not memories.db:
        raise BackupError("the knowledge and agent memory stores must share one database")
    runs = knowledge.documents.runs
    with verified(path, runs=runs, progress=progress) as checked:
        manifest = checked.manifest
        if manifest.tenant != tenant_id:
            raise RestoreConflict(f"the backup holds tenant {manifest.tenant!r}'s memory,"
                                  f" not tenant {tenant_id!r}'s: restore it into"
                                  f" {manifest.tenant!r}")
        try:
            with knowledge.db.write() as db:
                if checked.register is not None and runs.get_data_key(
                        checked.register.id) is None:
                    runs.put_data_key(checked.register)
                _clear(knowledge, memories, db, tenant_id)
                _load(knowledge, memories, db, checked, tenant_id, clock(now), progress)
                if in_transaction is not None:
                    in_transaction(manifest)
        except (SealedDataError, CryptoError) as problem:
            raise BackupKeyError(f"tenant {tenant_id}'s memory in this database is kept"
                                 f" encrypted: {problem}. Nothing was restored") from None
    return manifest


def backup_tenant(backends: Backends, tenant_id: str, path: Path, *,
                  progress: Progress | None = None) -> BackupSummary:
    """`backup` of the memory in the backends' database (its tables made if new)."""
    knowledge, memories = _stores(backends)
    return backup(knowledge, memories, tenant_id, path, progress=progress)


def restore_tenant(backends: Backends, path: Path, tenant_id: str, *,
                   progress: Progress | None = None,
                   in_transaction: Callable[[Manifest], None] | None = None) -> Manifest:
    """`restore` into the memory stores of the backends' database."""
    knowledge, memories = _stores(backends)
    return restore(knowledge, memories, path, tenant_id, progress=progress,
                   in_transaction=in_transaction)


def _stores(backends: Backends) -> tuple[SQLKnowledgeStore, SQLAgentMemoryStore]:
    """The memory stores of the backends' database (their tables made if new)."""
    knowledge, memories = open_store(backends), open_agent_memory_store(backends)
    if not isinstance(knowledge, SQLKnowledgeStore) or not isinstance(
            memories, SQLAgentMemoryStore):
        raise BackupError("this database's memory stores cannot be backed up or restored")
    return knowledge, memories


def restored(manifest: Manifest) -> dict[str, Any]:
    """What a restore reports (`homeo memory restore --json`, POST /v1/memory/restore)."""
    return {"tenant": manifest.tenant, "counts": manifest.counts.model_dump(),
            "backup_created_at": manifest.created_at, "homeo_version": manifest.homeo_version}


def _clear(knowledge: SQLKnowledgeStore, memories: SQLAgentMemoryStore, db: Any,
           tenant_id: str) -> None:
    """Remove every collection, document, chunk, full-text entry and memory of the tenant."""
    sql = knowledge.db.sql
    for row in db.execute(sql("SELECT id FROM memory_collections WHERE tenant_id = ?"),
                          (tenant_id,)).fetchall():
        knowledge._unindex_collection(db, row["id"])
    db.execute(sql("DELETE FROM memory_chunks WHERE tenant_id = ?"), (tenant_id,))
    db.execute(sql("DELETE FROM memory_documents WHERE tenant_id = ?"), (tenant_id,))
    db.execute(sql("DELETE FROM memory_collections WHERE tenant_id = ?"), (tenant_id,))
    ids = [int(row["id"]) for row in db.execute(sql(
        "SELECT id FROM agent_memories WHERE tenant_id = ?"), (tenant_id,)).fetchall()]
    memories._delete(db, ids)


def _insert_chunks(knowledge: SQLKnowledgeStore, db: Any,
                   pending: list[tuple[str, tuple[Any, ...], str]]) -> None:
    """Insert a batch of chunk rows (collection id, row as stored, plain text)
    and their full-text entries, made from the plain text."""
    ids = knowledge._insert_chunks(db, [(row, text) for _, row, text in pending])
    indexed: dict[str, list[tuple[int, str]]] = {}
    for chunk_id, (collection_id, _, text) in zip(ids, pending, strict=True):
        indexed.setdefault(collection_id, []).append((chunk_id, text))
    for collection_id, rows in indexed.items():
        knowledge._index_chunks(db, collection_id, rows)


def _load(knowledge: SQLKnowledgeStore, memories: SQLAgentMemoryStore, db: Any,
          checked: VerifiedBackup, tenant_id: str, at: float,
          progress: Progress | None) -> None:
    sql = knowledge.db.sql
    # The texts go in as the stores write them: sealed when the tenant is
    # sensitive in this database, whatever it was where the backup was taken.
    document_text = knowledge.documents.sealing(tenant_id)
    chunk_text = knowledge.chunks.sealing(tenant_id)
    memory_text = memories.texts.sealing(tenant_id)
    collection_ids: dict[str, str] = {}
    memory_ids: dict[int, int] = {}
    superseded: list[tuple[int, MemoryRecord]] = []
    # chunks to insert: (collection id, row as stored, plain text)
    pending: list[tuple[str, tuple[Any, ...], str]] = []
    total = checked.manifest.counts.chunks + checked.manifest.counts.memories
    done = 0
    for item in _plan(checked):
        if isinstance(item, CollectionRecord):
            collection_ids[item.name] = new_id("col", at)
            db.execute(sql(
                "INSERT INTO memory_collections (id, tenant_id, name, model, dimensions,"
                " version, created_at) VALUES (?, ?, ?, ?, ?, 1, ?)"),
                (collection_ids[item.name], tenant_id, item.name, item.model, item.dimensions,
                 item.created_at))
        elif isinstance(item, DocumentRecord):
            try:
                db.execute(sql(
                    "INSERT INTO memory_documents (id, tenant_id, collection_id, title, source,"
                    " format, text, chars, chunks, content_hash, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                    (item.id, tenant_id, collection_ids[item.collection], item.title,
                     item.source, item.format, document_text(item.text), item.chars,
                     item.chunks,
                     item.content_hash, item.created_at, item.updated_at))
            except knowledge.db.duplicate_error:
                raise RestoreConflict(f"document id {item.id} of the backup belongs to another"
                                      " tenant in this database: nothing was restored"
                                      ) from None
        elif isinstance(item, _Chunk):
            record = item.record
            pending.append((collection_ids[item.collection], (
                tenant_id, collection_ids[item.collection], record.document, record.position,
                chunk_text(record.text), record.start, record.end, record.content_hash,
                record.model, record.dimensions, item.vector), record.text))
            if len(pending) >= _BATCH:
                _insert_chunks(knowledge, db, pending)
                pending.clear()
            done += 1
        else:
            record = item.record
            memory_ids[record.id] = memories._insert_row(db, (
                tenant_id, record.scope, memory_text(record.text), record.subject,
                record.importance, record.created_at, record.updated_at, record.last_used_at,
                record.expires_at, record.model, record.dimensions, item.vector), record.text)
            superseded.append((memory_ids[record.id], record))
            done += 1
        if progress is not None and done and done % _BATCH == 0:
            progress("restoring", done, total)
    _insert_chunks(knowledge, db, pending)
    for memory_id, record in superseded:
        if record.seen == 1 and record.superseded_by is None and record.superseded_at is None:
            continue
        by = None
        if record.superseded_by is not None:
            # Superseded by a memory deleted since: 0 keeps it out of recall
            # and names no memory (ids start at 1), where its old id might.
            by = memory_ids.get(record.superseded_by, 0)
        db.execute(sql("UPDATE agent_memories SET seen = ?, superseded_by = ?,"
                       " superseded_at = ? WHERE id = ?"),
                   (record.seen, by, record.superseded_at, memory_id))
    if progress is not None:
        progress("restoring", total, total)

