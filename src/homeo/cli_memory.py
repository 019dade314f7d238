"""`homeo memory`: add files to a collection, search it, list what is there,
re-embed it, back a tenant's memory up and restore it; straight on the
database the settings name (no server needed), with the embedding model in
this process.

`--json` prints what the HTTP API returns for the same question
(GET /v1/collections/{name}/search, GET /v1/collections)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from homeo.cli_common import (
    CONTEXT,
    DataDir,
    DatabaseUrl,
    Tenant,
    console,
    fail,
    json_errors,
    print_json,
    tenant_runtime,
)

memory_app = typer.Typer(help="Add documents to collections and search them; back up and restore"
                         " a tenant's memory (no server needed).",
                         no_args_is_help=True, context_settings=CONTEXT)

CollectionOption = Annotated[str, typer.Option("--collection", "-c", help="The collection.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON, as the HTTP API returns it.")]


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False)


def _knowledge(runtime: Any) -> Any:  # (Runtime) -> Knowledge
    from homeo.llm.resolve import UnknownModel

    try:
        return runtime.knowledge()
    except UnknownModel as problem:
        fail(f"{problem} (HOMEO_MEMORY_EMBEDDING_MODEL names the embedding alias)", code=2)


@dataclass
class _Tally:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def _files(paths: list[Path], tally: _Tally) -> list[Path]:
    """The files under `paths`, folders walked in name order; hidden ones skipped."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path).parts
                if any(part.startswith(".") for part in relative):
                    if child.is_file():
                        tally.skipped.append((str(child), "hidden"))
                elif child.is_file():
                    found.append(child)
        elif path.is_file():
            found.append(path)
        else:
            tally.skipped.append((str(path), "no such file or folder"))
    return found


# When `memory add` indexes its files itself, their jobs (the fallback, should
# it be stopped) come due this much later, so a running worker does not do
# the same work meanwhile.
CLI_INGEST_DELAY_SECONDS = 120.0


@dataclass
class _Accepted:
    path: Path
    ingestion: Any  # homeo.memory.store.Ingestion
    replaces: bool


def _accept(runtime: Any, knowledge: Any, tenant: str, collection: str, path: Path,
            tally: _Tally, delay: float) -> _Accepted | None:
    """Read one file and accept it as an ingestion (its job queued); None if skipped."""
    from homeo.engine.ingest import submit_ingestion
    from homeo.memory.embedder import content_hash
    from homeo.memory.extract import ExtractError, extract, format_of
    from homeo.memory.store import KnowledgeError

    format = format_of(path.name)
    if format is None:
        tally.skipped.append((str(path), f"not a readable type ({path.suffix or 'no suffix'};"
                              " homeo reads .txt, .md, .html, .pdf)"))
        return None
    try:
        extracted = extract(path.read_bytes(), format)
    except (OSError, ExtractError) as problem:
        tally.skipped.append((str(path), str(problem)))
        return None
    if not extracted.text.strip():
        tally.skipped.append((str(path), "no text in it"))
        return None
    source = str(path.resolve())
    known = knowledge.store.find_document(tenant, collection, source)
    if known is not None and known.content_hash == content_hash(extracted.text):
        tally.skipped.append((str(path), "unchanged since it was added"))
        return None
    try:
        ingestion, _ = submit_ingestion(
            runtime.backends, knowledge.store, tenant, collection, extracted,
            title=extracted.title or path.name, source=source,
            replace=known.id if known else None, delay=delay)
    except KnowledgeError as problem:
        fail(str(problem))
    return _Accepted(path, ingestion, known is not None)


async def _index(knowledge: Any, tenant: str, accepted: _Accepted,
                 progress: Callable[[int, int], None]) -> None:
    """Index an accepted file in this process, as a worker would."""
    from homeo.llm.base import ModelError
    from homeo.memory.ingest import index_ingestion
    from homeo.memory.store import KnowledgeError

    store = knowledge.store
    ingestion = await asyncio.to_thread(store.get_ingestion, tenant, accepted.ingestion.id,
                                        with_text=True)
    if ingestion.status == "done":  # a worker finished it meanwhile
        return

    async def show(done: int, total: int) -> None:
        progress(done, total)

    try:
        await index_ingestion(store, knowledge.embedder, knowledge.policy, ingestion, tenant,
                              progress=show)
    except KnowledgeError as problem:
        await asyncio.to_thread(store.fail_ingestion, tenant, ingestion.id, str(problem))
        fail(f"{accepted.path}: {problem}")
    except ModelError as problem:  # its job is queued: a worker tries again later
        fail(f"{accepted.path}: {problem} (it stays queued for `homeo worker`: ingestion"
             f" {ingestion.id})")


@memory_app.command("add")
def memory_add(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to add.")],
    collection: CollectionOption,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="Queue the files for `homeo worker` and return at once.")] = False,
    tenant: Tenant = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: what was"
                                          " added, replaced, queued and skipped.")] = False,
) -> None:
    """Add files (.txt, .md, .html, .pdf) and folders to a collection: a file
    added before is replaced if it changed and skipped if not. Each file is
    accepted first (an ingestion, with a queued job), then indexed here with
    a progress bar; stopped midway, the workers finish what was accepted."""
    with json_errors(as_json):
        tally, accepted = _add(paths, collection, no_wait, tenant, data_dir, database_url)
    reasons = Counter(why for _, why in tally.skipped)
    refused = not accepted and reasons and set(reasons) != {"unchanged since it was added"}
    if as_json:
        print_json({"collection": collection, "added": tally.added, "replaced": tally.replaced,
                    "queued": [{"path": str(made.path), "ingestion": made.ingestion.id}
                               for made in accepted] if no_wait else [],
                    "skipped": [{"path": path, "why": why} for path, why in tally.skipped]})
    else:
        _print_added(collection, no_wait, tally, accepted)
    if refused:
        raise typer.Exit(1)


def _add(paths: list[Path], collection: str, no_wait: bool, tenant: str | None,
         data_dir: Path | None, database_url: str | None) -> tuple[_Tally, list[_Accepted]]:
    """Accept the files and, unless `no_wait`, index them here with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from homeo.memory.knowledge import check_collection_name
    from homeo.memory.store import KnowledgeError

    try:
        check_collection_name(collection)
    except KnowledgeError as problem:
        fail(str(problem), code=2)
    tally = _Tally()
    files = _files(paths, tally)
    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        knowledge = _knowledge(runtime)
        owner = settings.default_tenant
        delay = 0.0 if no_wait else CLI_INGEST_DELAY_SECONDS
        accepted = [made for path in files
                    if (made := _accept(runtime, knowledge, owner, collection, path, tally,
                                        delay)) is not None]

        async def index_all() -> None:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[name]}"))
            with Progress(*columns, console=console, transient=True) as progress:
                task = progress.add_task("adding", total=len(accepted), name="")
                for made in accepted:
                    def show(done: int, total: int, name: str = made.path.name) -> None:
                        progress.update(task, name=f"{name} ({done}/{total} chunks)")

                    await _index(knowledge, owner, made, show)
                    (tally.replaced if made.replaces else tally.added).append(str(made.path))
                    progress.advance(task)

        if not no_wait:
            asyncio.run(index_all())
    return tally, accepted


def _print_added(collection: str, no_wait: bool, tally: _Tally,
                 accepted: list[_Accepted]) -> None:
    out = _out()
    if no_wait:
        out.print(f"{collection}: {len(accepted)} queued for `homeo worker`,"
                  f" {len(tally.skipped)} skipped", markup=False)
        for made in accepted:
            out.print(f"  queued {made.path}: ingestion {made.ingestion.id}", markup=False)
    else:
        out.print(f"{collection}: {len(tally.added)} added, {len(tally.replaced)} replaced,"
                  f" {len(tally.skipped)} skipped", markup=False)
    for path, why in tally.skipped:
        out.print(f"  skipped {path}: {why}", markup=False)


@memory_app.command("search")
def memory_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    collection: CollectionOption,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many chunks.")] = 10,
    mode: Annotated[str, typer.Option(help="hybrid, text or vector.")] = "hybrid",
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Search a collection: the best chunks, with their document and place."""
    from homeo.api.collections import HitView, SearchResults
    from homeo.llm.base import ModelError
    from homeo.memory.store import KnowledgeError

    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        knowledge = _knowledge(runtime)
        try:
            hits = asyncio.run(knowledge.search(settings.default_tenant, collection, query, k,
                                                mode))
        except (KnowledgeError, ModelError) as problem:
            fail(str(problem))
    results = SearchResults(collection=collection, mode=mode,
                            results=[HitView.of(hit) for hit in hits])
    if as_json:
        print(json.dumps(results.model_dump(mode="json"), ensure_ascii=False))
        return
    if not hits:
        console.print(f"homeo: nothing in {collection!r} matches", markup=False)
        return
    out = _out()
    for rank, hit in enumerate(results.results, start=1):
        where = hit.source or hit.title or hit.document_id
        out.print(f"{rank:>3}. {hit.score:.4f}  {where}  chunk {hit.position}"
                  f" ({hit.document_id})", markup=False)
        for line in hit.text.strip().splitlines()[:6]:
            out.print(f"       {line[:160]}", markup=False)


@memory_app.command("list")
def memory_list(
    collection: Annotated[str | None, typer.Option(
        "--collection", "-c", help="List this collection's documents instead.")] = None,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List the tenant's collections, or the documents of one."""
    from homeo.memory.store import open_store

    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        store = open_store(runtime.backends)
        if collection is None:
            rows: list[Any] = store.list_collections(settings.default_tenant)
        elif store.get_collection(settings.default_tenant, collection) is None:
            fail(f"no collection {collection!r} for tenant {settings.default_tenant!r};"
                 " `homeo memory list` shows them")
        else:
            rows = store.list_documents(settings.default_tenant, collection, limit=10_000)
    key = "collections" if collection is None else "documents"
    if as_json:
        print(json.dumps({key: [row.model_dump(mode="json") for row in rows]},
                         ensure_ascii=False))
        return
    if not rows:
        console.print(f"homeo: tenant {settings.default_tenant!r} has no collections",
                      markup=False)
        return
    out = _out()
    for row in rows:
        if collection is None:
            model = f"{row.model}, {row.dimensions} dims" if row.model else "no vectors"
            out.print(f"{row.name}  {row.documents} documents, {row.chunks} chunks ({model})",
                      markup=False)
        else:
            out.print(f"{row.id}  {row.chunks} chunks  {row.source or row.title or ''}",
                      markup=False)


@memory_app.command("reembed")
def memory_reembed(
    collection: CollectionOption,
    tenant: Tenant = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: the"
                                          " chunks embedded again and the model.")] = False,
) -> None:
    """Embed a collection's chunks again with the current embedding model
    (after HOMEO_MODELS or HOMEO_MEMORY_EMBEDDING_MODEL changed)."""
    from homeo.llm.base import ModelError
    from homeo.memory.store import KnowledgeError

    with json_errors(as_json), tenant_runtime(tenant, data_dir, database_url) as (
            settings, runtime):
        knowledge = _knowledge(runtime)
        async def reembed() -> tuple[int, Any]:
            count = await knowledge.reembed(settings.default_tenant, collection)
            return count, await knowledge.embedder.identity()

        try:
            count, model = asyncio.run(reembed())
        except (KnowledgeError, ModelError) as problem:
            fail(str(problem))
    if as_json:
        print_json({"collection": collection, "chunks": count, "model": model.name,
                    "dimensions": model.dimensions})
        return
    _out().print(f"{collection}: {count} chunks embedded again with {model.name}"
                 f" ({model.dimensions} dimensions)", markup=False)


Path_ = Annotated[Path, typer.Argument(help="The backup file (a tar).")]


def _bar() -> Any:  # (Progress, Progress callback)
    """A bar per stage of a backup or restore, on the terminal only."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   console=console, transient=True)
    tasks: dict[str, Any] = {}

    def step(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return bar, step


@memory_app.command("backup")
def memory_backup(
    path: Path_,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write the tenant's memory (collections, documents, chunks, vectors, agent
    memories) to one file, consistent while writes go on."""
    from homeo.audit import Event
    from homeo.cli_audit import audit_log_or_exit
    from homeo.memory.backup import BackupError, backup_tenant

    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        audit = audit_log_or_exit(settings, runtime.backends.store)
        bar, step = _bar()
        try:
            with bar:
                summary = backup_tenant(runtime.backends, settings.default_tenant, path,
                                        progress=step)
        except (BackupError, OSError) as problem:
            fail(f"backup failed: {problem}")
        if audit is not None:
            audit.record(settings.default_tenant, Event(
                "memory.backup", "cli", f"tenant:{settings.default_tenant}",
                {"counts": summary.counts.model_dump(), "bytes": summary.bytes}))
    if as_json:
        print(json.dumps(summary.as_json()))
        return
    counts = summary.counts
    _out().print(f"{path}: {counts.collections} collections, {counts.documents} documents,"
                 f" {counts.chunks} chunks, {counts.memories} memories of tenant"
                 f" {summary.tenant!r} ({summary.bytes} bytes)", markup=False)


@memory_app.command("restore")
def memory_restore(
    path: Path_,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Replace the tenant's memory with a backup, after checking all of it: a
    damaged backup is refused and the memory stays as it was."""
    from homeo.audit import Event
    from homeo.cli_audit import audit_log_or_exit
    from homeo.memory.backup import BackupError, Manifest, restore_tenant, restored

    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        audit = audit_log_or_exit(settings, runtime.backends.store)

        def record(manifest: Manifest) -> None:
            if audit is not None:
                audit.record(settings.default_tenant, Event(
                    "memory.restore", "cli", f"tenant:{settings.default_tenant}",
                    {"counts": manifest.counts.model_dump(),
                     "backup_created_at": manifest.created_at}))

        bar, step = _bar()
        try:
            with bar:
                manifest = restore_tenant(runtime.backends, path, settings.default_tenant,
                                          progress=step, in_transaction=record)
        except (BackupError, OSError) as problem:
            fail(f"nothing restored: {problem}")
    if as_json:
        print(json.dumps(restored(manifest)))
        return
    counts = manifest.counts
    _out().print(f"tenant {manifest.tenant!r}: restored {counts.collections} collections,"
                 f" {counts.documents} documents, {counts.chunks} chunks, {counts.memories}"
                 f" memories from {path}", markup=False)
