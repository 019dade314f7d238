"""`homeo models`: the one-time steps that prepare the in-process models, and the
model registry (evolve/registry.py): list, register, promote, rollback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from homeo.cli_common import CONTEXT, console, fail, json_errors, print_json, settings_or_exit

models_app = typer.Typer(help="Prepare the in-process models; the model registry (list, register, promote,"
                              " rollback).",
                         no_args_is_help=True, context_settings=CONTEXT)


@models_app.command("convert-minilm")
def convert_minilm(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o",
        help="Write the export here (default: HOMEO_EMBED_ONNX_DIR, else beside the"
             " Python environment).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Redo an export that is already there.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: where the"
                                          " export is and whether this run made it.")] = False,
) -> None:
    """Export the shipped all-MiniLM-L6-v2 to ONNX once, with torch, so embeddings
    run on ONNX Runtime without torch. Checked against sentence-transformers
    before it is installed; needs no network."""
    from homeo.llm.base import ModelError
    from homeo.llm.providers.minilm import DEFAULT_MODEL_NAME, default_model_dir
    from homeo.llm.providers.minilm_export import export_minilm
    from homeo.llm.providers.minilm_onnx import MANIFEST_FILE, default_onnx_dir

    with json_errors(as_json):
        settings = settings_or_exit()
        target = (output or settings.embed_onnx_dir or default_onnx_dir()).resolve()
        if (target / MANIFEST_FILE).exists() and not force:
            console.print(f"minilm: the ONNX export is already at {target} (--force redoes"
                          " it)", markup=False)
            if as_json:
                print_json({"directory": str(target), "exported": False})
            return
        try:
            report = export_minilm(default_model_dir(), target, model_name=DEFAULT_MODEL_NAME,
                                   force=force)
        except ModelError as error:
            fail(str(error))
    if as_json:
        print_json({"directory": str(report.directory), "exported": True,
                    "graph_bytes": report.graph_bytes, "max_abs_diff": report.max_abs_diff})
        return
    console.print(f"minilm: exported to {report.directory} ({report.graph_bytes / 2**20:.0f}"
                  f" MiB); largest difference from sentence-transformers"
                  f" {report.max_abs_diff:.1e}", markup=False)


Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DataDir = Annotated[Path | None, typer.Option(help="Where data lives [HOMEO_DATA_DIR].")]
DatabaseUrl = Annotated[
    str | None, typer.Option(help="sqlite:///PATH or postgresql://... [HOMEO_DATABASE_URL].")
]
By = Annotated[str, typer.Option("--by", help="Who makes the change (kept in the history).")]


@models_app.command("list")
def list_models(
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The model registry: base models and adapters, their stage and lineage, and
    which model each alias serves."""
    from homeo.cli_common import opened

    settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
    with opened(settings, publish=False) as runtime:
        store = runtime.backends.store
        models = store.list_models()
        changes = store.alias_changes()
    aliases: dict[str, dict[str, object]] = {}
    for change in changes:  # oldest first: the last one of each alias is in force
        aliases[change.alias] = {"model": change.model_id, "deployment": change.deployment,
                                 "since": change.at}
    if as_json:
        print_json({"models": [m.model_dump(mode="json") for m in models], "aliases": aliases,
                    "history": [c.model_dump(mode="json") for c in changes]})
        return
    if not models:
        console.print("no models registered; `homeo models register` adds one", markup=False)
        return
    for m in models:
        lineage = f" <- {m.parent}" if m.parent else ""
        data = f" data {m.dataset}" if m.dataset else ""
        print(f"{m.id:<28}{m.kind:<9}{m.stage:<11}{m.deployment or '-':<20}"
              f"{m.sha256[:12]}{lineage}{data}")
    for alias, now in sorted(aliases.items()):
        print(f"alias {alias} -> {now['model']} ({now['deployment']})")


@models_app.command("register")
def register_model(
    model_id: Annotated[str, typer.Argument(help="The model's id in the registry.")],
    path: Annotated[Path, typer.Argument(help="Its GGUF file (a base model or an adapter).")],
    deployment: Annotated[str | None, typer.Option(
        help="The HOMEO_MODELS deployment that serves it.")] = None,
    parent: Annotated[str | None, typer.Option(
        help="For an adapter: the registered base model it applies to.")] = None,
    dataset: Annotated[str | None, typer.Option(help="NAME@VERSION it was trained on.")] = None,
    stage: Annotated[str, typer.Option(
        help="candidate, challenger, champion or retired.")] = "candidate",
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a GGUF model or LoRA adapter to the registry, with its sha256."""
    import time

    from homeo.cli_common import opened
    from homeo.evolve.lora import file_sha256
    from homeo.evolve.registry import RegistryError, register
    from homeo.store.base import StoreError

    if not path.is_file():
        fail(f"no file at {path}; give the path of a .gguf file")
    settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
    with opened(settings, publish=False) as runtime:
        try:
            record = register(runtime.backends.store, model_id, path.resolve(),
                              file_sha256(path), deployment=deployment, parent=parent,
                              dataset=dataset, stage=stage, now=time.time())
        except (RegistryError, StoreError) as error:
            fail(str(error))
    if as_json:
        print_json(record.model_dump(mode="json"))
        return
    print(f"registered {record.id} ({record.kind}, {record.stage}), sha256 {record.sha256}")


def _alias_change(action: str, alias: str, model_id: str | None, by: str, as_json: bool,
                  data_dir: Path | None, database_url: str | None) -> None:
    import time

    from homeo.cli_common import opened
    from homeo.evolve.registry import RegistryError, promote, rollback

    settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
    if alias not in settings.models:
        fail(f"alias {alias!r} is not in HOMEO_MODELS"
             f" ({', '.join(sorted(settings.models)) or 'none configured'})")
    with opened(settings, publish=False) as runtime:
        store = runtime.backends.store
        try:
            if model_id is not None:
                known = {entry.key for entry in settings.models[alias]}
                change = promote(store, model_id, alias, by=by, now=time.time(),
                                 known_deployments=known)
            else:
                change = rollback(store, alias, by=by, now=time.time())
        except RegistryError as error:
            fail(str(error))
    if as_json:
        print_json(change.model_dump(mode="json"))
        return
    print(f"{alias} now serves {change.model_id} through {change.deployment}"
          f" ({action}; was {change.previous_model_id or 'its configured weights'})")


@models_app.command("promote")
def promote_model(
    model_id: Annotated[str, typer.Argument(help="The registered model to make champion.")],
    alias: Annotated[str, typer.Option("--alias", help="The HOMEO_MODELS alias.")],
    by: By = "cli",
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Make a model the champion of an alias: every process's router sends the
    alias's first tries to its deployment (within HOMEO_CONTROL_REFRESH_SECONDS)."""
    _alias_change("promote", alias, model_id, by, as_json, data_dir, database_url)


@models_app.command("rollback")
def rollback_model(
    alias: Annotated[str, typer.Option("--alias", help="The HOMEO_MODELS alias.")],
    by: By = "cli",
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Serve the model the alias served before its latest change again."""
    _alias_change("rollback", alias, None, by, as_json, data_dir, database_url)
