"""The agent memory store: what agents remembered, per tenant and scope, each
memory with its vector and a full-text entry (SQLite a contentless FTS5
table; PostgreSQL a tsvector column), its importance, times, expiry and, once a newer memory
contradicted it, the id of that memory (`superseded_by`).

A scope says whose memory it is inside the tenant: `tenant`, `agent:NAME` or
`run:ID` (homeo.memory.memories makes them from an agent's YAML). Every
method takes a `tenant_id` and never reads or changes another tenant's rows.
Both backends pass the contract suite in tests/memory/test_agent_memory_store.py.

The rules (what is worth storing, merging, superseding, pruning) live above
this store, in homeo.memory.lifecycle and homeo.memory.memories.

For a tenant marked sensitive (homeo.crypto) the text is sealed with the
tenant's data key; the full-text index keeps its terms (not the text) and the
vector stays as it is, so search still works.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from homeo.backends import Backends
from homeo.db.dialect import Dialect, clock
from homeo.store.sealed import SealedTexts
from homeo.store.sql import SQLStore


class Memory(BaseModel):
    id: int
    scope: str
    text: str
    subject: str | None  # the claim's key (lifecycle.Claim.key), if the text is a claim
    importance: float
    seen: int  # how many times it was stored (merged duplicates count)
    created_at: float
    updated_at: float
    last_used_at: float  # stored, merged into or recalled
    expires_at: float | None
    superseded_by: int | None
    superseded_at: float | None
    model: str


@dataclass(frozen=True, slots=True)
class NewMemory:
    scope: str
    text: str
    subject: str | None
    importance: float
    expires_at: float | None
    model: str
    dimensions: int
    vector: bytes  # little-endian float32


@dataclass(frozen=True, slots=True)
class LiveVectors:
    """The vectors of a scope's live memories (not superseded, not expired)."""

    ids: list[int]
    subjects: list[str | None]
    texts: list[str]
    model: list[str]
    dimensions: list[int]
    vectors: list[bytes]


@dataclass(frozen=True, slots=True)
class Pruned:
    expired: int = 0
    decayed: int = 0
    superseded: int = 0

    @property
    def total(self) -> int:
        return self.expired + self.decayed + self.superseded


class AgentMemoryStore(ABC):
    @abstractmethod
    def insert(self, tenant_id: str, new: NewMemory, *, now: float | None = None) -> Memory: ...

    @abstractmethod
    def reinforce(self, tenant_id: str, memory_id: int, *, importance: float,
                  expires_at: float | None, now: float | None = None) -> Memory | None:
        """Count the memory seen once more: the higher importance, the later
        expiry (None: never), last used now. None: no such memory."""

    @abstractmethod
    def supersede(self, tenant_id: str, old_ids: list[int], by: int, *,
                  now: float | None = None) -> None:
        """Mark these memories replaced by memory `by`."""

    @abstractmethod
    def get(self, tenant_id: str, memory_id: int) -> Memory | None: ...

    @abstractmethod
    def list_memories(self, tenant_id: str, scope: str | None = None, *, superseded: bool = False,
             limit: int = 100, before: int | None = None) -> list[Memory]:
        """Newest first; all scopes unless one is named; superseded ones only
        with `superseded`; `before` is a memory id to page on from."""

    @abstractmethod
    def live(self, tenant_id: str, scope: str | None, *,
             now: float | None = None) -> LiveVectors:
        """Every live memory's vector in the scope (None: every scope of the tenant)."""

    @abstractmethod
    def text_search(self, tenant_id: str, scope: str | None, terms: list[str], k: int, *,
                    now: float | None = None) -> list[tuple[int, float]]:
        """(memory id, score), best first, among live memories holding any of
        `terms`, in the scope (None: every scope of the tenant)."""

    @abstractmethod
    def touch(self, tenant_id: str, ids: list[int], *, now: float | None = None) -> None:
        """The memories were recalled: last used now (their decay starts again)."""

    @abstractmethod
    def delete(self, tenant_id: str, memory_id: int) -> bool:
        """Remove the memory: its row, vector and full-text entry."""

    @abstractmethod
    def prune(self, *, floor: float, half_life: float, superseded_grace: float,
              now: float | None = None) -> Pruned:
        """Over every tenant, delete (row, vector, full text) the memories past
        their expiry, those whose decayed importance fell under `floor`, and
        those superseded more than `superseded_grace` seconds ago."""


_COLUMNS = ("id, scope, text, subject, importance, seen, created_at, updated_at, last_used_at,"
            " expires_at, superseded_by, superseded_at, model")
_LIVE = " AND superseded_by IS NULL AND (expires_at IS NULL OR expires_at > ?)"


class SQLAgentMemoryStore(AgentMemoryStore):
    """The SQL both databases share; each adds its migrations and full text."""

    def __init__(self, database: Dialect, migrations: Sequence[str],
                 runs: SQLStore | None = None) -> None:
        self.db = database
        # The run store knows which tenants are sensitive and holds the cipher:
        # their memories' text is sealed like their runs (homeo.store.sealed).
        self.texts = SealedTexts(runs, "agent_memories.text")
        database.migrate("agent_memory", migrations)  # type: ignore[attr-defined]

    @abstractmethod
    def _insert_row(self, db: Any, values: tuple[Any, ...], text: str) -> int:
        """Insert the row (its text as stored) and the full-text entry of
        `text` (in plain: the index keeps terms, never the text); its id."""

    @abstractmethod
    def _unindex(self, db: Any, ids: list[int]) -> None:
        """Remove the full-text entries of these memories."""

    def _memory(self, tenant_id: str, row: Any) -> Memory:
        record = dict(row)
        record["text"] = self.texts.plain(tenant_id, record["text"])
        return Memory.model_validate(record)

    def _one(self, text: str, params: Sequence[Any]) -> Any:
        with self.db.read() as db:
            return db.execute(self.db.sql(text), params).fetchone()

    def _all(self, text: str, params: Sequence[Any]) -> list[Any]:
        with self.db.read() as db:
            return db.execute(self.db.sql(text), params).fetchall()

    def insert(self, tenant_id: str, new: NewMemory, *, now: float | None = None) -> Memory:
        at = clock(now)
        with self.db.write() as db:
            memory_id = self._insert_row(db, (
                tenant_id, new.scope, self.texts.stored(tenant_id, new.text), new.subject,
                new.importance, at, at, at, new.expires_at, new.model, new.dimensions,
                new.vector), new.text)
        found = self.get(tenant_id, memory_id)
        assert found is not None
        return found

    def reinforce(self, tenant_id: str, memory_id: int, *, importance: float,
                  expires_at: float | None, now: float | None = None) -> Memory | None:
        at = clock(now)
        with self.db.write() as db:
            row = db.execute(self.db.sql(
                f"SELECT importance, expires_at FROM agent_memories WHERE tenant_id = ?"
                f" AND id = ?{self.db.for_update}"), (tenant_id, memory_id)).fetchone()
            if row is None:
                return None
            old = row["expires_at"]
            later = None if old is None or expires_at is None else max(float(old), expires_at)
            db.execute(self.db.sql(
                "UPDATE agent_memories SET seen = seen + 1, importance = ?, expires_at = ?,"
                " updated_at = ?, last_used_at = ? WHERE id = ?"),
                (max(float(row["importance"]), importance), later, at, at, memory_id))
        return self.get(tenant_id, memory_id)

    def supersede(self, tenant_id: str, old_ids: list[int], by: int, *,
                  now: float | None = None) -> None:
        if not old_ids:
            return
        marks = ", ".join("?" * len(old_ids))
        with self.db.write() as db:
            db.execute(self.db.sql(
                f"UPDATE agent_memories SET superseded_by = ?, superseded_at = ?"
                f" WHERE tenant_id = ? AND id IN ({marks})"),
                (by, clock(now), tenant_id, *old_ids))

    def get(self, tenant_id: str, memory_id: int) -> Memory | None:
        row = self._one(f"SELECT {_COLUMNS} FROM agent_memories WHERE tenant_id = ? AND id = ?",
                        (tenant_id, memory_id))
        return None if row is None else self._memory(tenant_id, row)

    def list_memories(self, tenant_id: str, scope: str | None = None, *, superseded: bool = False,
             limit: int = 100, before: int | None = None) -> list[Memory]:
        text = f"SELECT {_COLUMNS} FROM agent_memories WHERE tenant_id = ?"
        params: list[Any] = [tenant_id]
        if scope is not None:
            text += " AND scope = ?"
            params.append(scope)
        if not superseded:
            text += " AND superseded_by IS NULL"
        if before is not None:
            text += " AND id < ?"
            params.append(before)
        rows = self._all(text + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [self._memory(tenant_id, row) for row in rows]

    def live(self, tenant_id: str, scope: str | None, *,
             now: float | None = None) -> LiveVectors:
        where, params = "tenant_id = ?", [tenant_id]
        if scope is not None:
            where += " AND scope = ?"
            params.append(scope)
        rows = self._all(
            "SELECT id, subject, text, model, dimensions, vector FROM agent_memories"
            f" WHERE {where}" + _LIVE + " ORDER BY id", (*params, clock(now)))
        return LiveVectors([int(r["id"]) for r in rows], [r["subject"] for r in rows],
                           [self.texts.plain(tenant_id, r["text"]) for r in rows],
                           [r["model"] for r in rows],
                           [int(r["dimensions"]) for r in rows], [bytes(r["vector"]) for r in rows])

    def touch(self, tenant_id: str, ids: list[int], *, now: float | None = None) -> None:
        if not ids:
            return
        marks = ", ".join("?" * len(ids))
        with self.db.write() as db:
            db.execute(self.db.sql(
                f"UPDATE agent_memories SET last_used_at = ? WHERE tenant_id = ? AND id IN"
                f" ({marks})"), (clock(now), tenant_id, *ids))

    def delete(self, tenant_id: str, memory_id: int) -> bool:
        with self.db.write() as db:
            row = db.execute(self.db.sql(
                "SELECT id FROM agent_memories WHERE tenant_id = ? AND id = ?"),
                (tenant_id, memory_id)).fetchone()
            if row is None:
                return False
            self._delete(db, [memory_id])
        return True

    def _delete(self, db: Any, ids: list[int]) -> None:
        for start in range(0, len(ids), 500):
            batch = ids[start:start + 500]
            self._unindex(db, batch)
            marks = ", ".join("?" * len(batch))
            db.execute(self.db.sql(f"DELETE FROM agent_memories WHERE id IN ({marks})"), batch)

    def prune(self, *, floor: float, half_life: float, superseded_grace: float,
              now: float | None = None) -> Pruned:
        at = clock(now)
        with self.db.write() as db:
            sql = self.db.sql
            expired = [int(r["id"]) for r in db.execute(sql(
                "SELECT id FROM agent_memories WHERE expires_at IS NOT NULL AND expires_at <= ?"),
                (at,)).fetchall()]
            superseded = [int(r["id"]) for r in db.execute(sql(
                "SELECT id FROM agent_memories WHERE superseded_at IS NOT NULL"
                " AND superseded_at <= ? AND (expires_at IS NULL OR expires_at > ?)"),
                (at - superseded_grace, at)).fetchall()]
            gone = set(expired) | set(superseded)
            # Decay needs a power the databases spell differently: computed here,
            # over the few columns it needs.
            decayed = [int(r["id"]) for r in db.execute(sql(
                "SELECT id, importance, last_used_at FROM agent_memories")).fetchall()
                if int(r["id"]) not in gone and float(r["importance"]) * 0.5 ** (
                    max(0.0, at - float(r["last_used_at"])) / half_life) < floor]
            self._delete(db, [*expired, *superseded, *decayed])
        return Pruned(len(expired), len(decayed), len(superseded))


SQLITE_MIGRATIONS = [
    """
    CREATE TABLE agent_memories (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        text TEXT NOT NULL,
        subject TEXT,
        importance REAL NOT NULL,
        seen INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        last_used_at REAL NOT NULL,
        expires_at REAL,
        superseded_by INTEGER,
        superseded_at REAL,
        model TEXT NOT NULL,
        dimensions INTEGER NOT NULL,
        vector BLOB NOT NULL
    );
    CREATE INDEX agent_memories_scope ON agent_memories (tenant_id, scope, id);
    CREATE INDEX agent_memories_expiry ON agent_memories (expires_at);
    CREATE VIRTUAL TABLE agent_memories_fts USING fts5 (text, tokenize = 'porter unicode61')
    """,
    # A contentless full-text table: it keeps the terms (to search them) but
    # not the text, which may be sealed in agent_memories (encryption at rest).
    """
    CREATE VIRTUAL TABLE agent_memories_terms USING fts5 (text, content = '',
                                                          tokenize = 'porter unicode61');
    INSERT INTO agent_memories_terms (rowid, text) SELECT rowid, text FROM agent_memories_fts;
    DROP TABLE agent_memories_fts;
    """,
]

POSTGRES_MIGRATIONS = [
    """
    CREATE TABLE agent_memories (
        id BIGSERIAL PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        text TEXT NOT NULL,
        subject TEXT,
        importance DOUBLE PRECISION NOT NULL,
        seen INTEGER NOT NULL DEFAULT 1,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        last_used_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        superseded_by BIGINT,
        superseded_at DOUBLE PRECISION,
        model TEXT NOT NULL,
        dimensions INTEGER NOT NULL,
        vector BYTEA NOT NULL,
        tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
    );
    CREATE INDEX agent_memories_scope ON agent_memories (tenant_id, scope, id);
    CREATE INDEX agent_memories_expiry ON agent_memories (expires_at);
    CREATE INDEX agent_memories_tsv ON agent_memories USING GIN (tsv);
    """,
    # The tsvector is written with the row from the plain text, no longer
    # generated from the column, which may hold sealed text (encryption at rest).
    """
    DROP INDEX agent_memories_tsv;
    ALTER TABLE agent_memories DROP COLUMN tsv;
    ALTER TABLE agent_memories ADD COLUMN tsv TSVECTOR;
    UPDATE agent_memories SET tsv = to_tsvector('english', text);
    CREATE INDEX agent_memories_tsv ON agent_memories USING GIN (tsv);
    """,
]

_INSERT = ("INSERT INTO agent_memories (tenant_id, scope, text, subject, importance, created_at,"
           " updated_at, last_used_at, expires_at, model, dimensions, vector)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class SQLiteAgentMemoryStore(SQLAgentMemoryStore):
    def __init__(self, database: Any, runs: SQLStore | None = None) -> None:
        super().__init__(database, SQLITE_MIGRATIONS, runs)

    def _insert_row(self, db: Any, values: tuple[Any, ...], text: str) -> int:
        memory_id = int(db.execute(_INSERT, values).lastrowid)
        db.execute("INSERT INTO agent_memories_terms (rowid, text) VALUES (?, ?)",
                   (memory_id, text))
        return memory_id

    def _unindex(self, db: Any, ids: list[int]) -> None:
        # A contentless table forgets a row only when told the text it indexed.
        marks = ", ".join("?" * len(ids))
        rows = db.execute(f"SELECT id, tenant_id, text FROM agent_memories WHERE id IN ({marks})",
                          ids).fetchall()
        db.executemany("INSERT INTO agent_memories_terms (agent_memories_terms, rowid, text)"
                       " VALUES ('delete', ?, ?)",
                       [(row["id"], self.texts.plain(row["tenant_id"], row["text"])) for row in rows])

    def text_search(self, tenant_id: str, scope: str | None, terms: list[str], k: int, *,
                    now: float | None = None) -> list[tuple[int, float]]:
        if not terms:
            return []
        # Each term quoted, so FTS5 syntax in a query is read as words; OR: any word.
        words = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
        where, params = "m.tenant_id = ?", [tenant_id]
        if scope is not None:
            where += " AND m.scope = ?"
            params.append(scope)
        rows = self._all(
            "SELECT m.id, bm25(agent_memories_terms) AS score FROM agent_memories_terms"
            " JOIN agent_memories m ON m.id = agent_memories_terms.rowid"
            f" WHERE agent_memories_terms MATCH ? AND {where}"
            " AND m.superseded_by IS NULL AND (m.expires_at IS NULL OR m.expires_at > ?)"
            " ORDER BY score LIMIT ?", (words, *params, clock(now), k))
        return [(int(row["id"]), -float(row["score"])) for row in rows]  # bm25: lower is better


class PostgresAgentMemoryStore(SQLAgentMemoryStore):
    def __init__(self, database: Any, runs: SQLStore | None = None) -> None:
        super().__init__(database, POSTGRES_MIGRATIONS, runs)

    def _insert_row(self, db: Any, values: tuple[Any, ...], text: str) -> int:
        insert = (_INSERT.replace(", vector)", ", vector, tsv)")
                  .replace("?)", "?, to_tsvector('english', ?))"))
        return int(db.execute(self.db.sql(insert + " RETURNING id"),
                              (*values, text)).fetchone()["id"])

    def _unindex(self, db: Any, ids: list[int]) -> None:
        """The tsvector goes with its row."""
        del db, ids

    def text_search(self, tenant_id: str, scope: str | None, terms: list[str], k: int, *,
                    now: float | None = None) -> list[tuple[int, float]]:
        # Each word alone (letters, digits, `_`): no operator reaches to_tsquery.
        words = [term for term in terms if term.replace("_", "").isalnum()]
        if not words:
            return []
        where, params = "tenant_id = ?", [tenant_id]
        if scope is not None:
            where += " AND scope = ?"
            params.append(scope)
        rows = self._all(
            "SELECT id, ts_rank_cd(tsv, q) AS rank FROM agent_memories,"
            " to_tsquery('english', ?) q"
            f" WHERE tsv @@ q AND {where}" + _LIVE + " ORDER BY rank DESC, id LIMIT ?",
            (" | ".join(words), *params, clock(now), k))
        return [(int(row["id"]), float(row["rank"])) for row in rows]


def open_agent_memory_store(backends: Backends) -> AgentMemoryStore:
    """The agent memory store in the backends' database (tables made on first
    open, under the `agent_memory` migrations)."""
    runs = backends.store if isinstance(backends.store, SQLStore) else None
    if backends.url.startswith("sqlite:///"):
        return SQLiteAgentMemoryStore(backends.database, runs)
    return PostgresAgentMemoryStore(backends.database, runs)
