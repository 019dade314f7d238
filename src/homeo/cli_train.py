"""`homeo train curate|lora`: training data from an agent's successful runs, and a
LoRA adapter of the local model fine-tuned on it (evolve/curate.py, evolve/lora.py).

No server is needed: these open the database the settings name.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from homeo.cli_common import (
    CONTEXT,
    DatabaseUrl,
    DataDir,
    Json,
    Tenant,
    console,
    fail,
    print_json,
    tenant_runtime,
)

train_app = typer.Typer(help="Curate training data from runs; fine-tune the local model.",
                        no_args_is_help=True, context_settings=CONTEXT)


@train_app.command("curate")
def curate_command(
    name: Annotated[str, typer.Argument(help="The data set's name; each curate makes a new"
                                             " version of it.")],
    agent: Annotated[str, typer.Option("--agent", help="Whose succeeded runs to use.")],
    min_score: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Keep only runs an evaluation scored this high or higher.")] = None,
    duplicate_threshold: Annotated[float, typer.Option(
        min=0.05, max=1.0, help="Jaccard similarity at which a run is a near-duplicate.")] = 0.8,
    validation: Annotated[float, typer.Option(
        min=0.0, max=0.9, help="The share of examples held out for validation.")] = 0.2,
    limit: Annotated[int, typer.Option(min=1, help="The newest runs looked at.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seeds the train/validation shuffle.")] = 0,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Make the next version of data set NAME from the agent's succeeded runs:
    near-duplicates dropped, secrets and personal data scrubbed, split."""
    try:
        from homeo.evolve.curate import CurateError, CurateRules, curate
    except ImportError:
        fail("curating needs the [train] extra: pip install 'homeo[train]'")
    rules = CurateRules(agent=agent, min_score=min_score,
                        duplicate_threshold=duplicate_threshold,
                        validation_fraction=validation, limit=limit, seed=seed)
    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        try:
            dataset = curate(runtime.backends.store, settings.default_tenant, name, rules,
                             now=time.time())
        except (CurateError, ImportError) as error:
            fail(str(error))
    summary = {"name": dataset.name, "version": dataset.version, "train": len(dataset.train),
               "validation": len(dataset.validation), "sha256": dataset.sha256,
               "provenance": dataset.provenance}
    if as_json:
        print_json(summary)
        return
    p = dataset.provenance
    Console(soft_wrap=True, highlight=False).print(
        f"{dataset.name}@{dataset.version}: {len(dataset.train)} train,"
        f" {len(dataset.validation)} validation from {p['runs_seen']} runs"
        f" ({p['near_duplicates']} near-duplicates, {p['below_min_score']} below the score,"
        f" {p['texts_scrubbed']} texts scrubbed)", markup=False)


@train_app.command("lora")
def lora_command(
    data: Annotated[str, typer.Option(
        "--data", help="A data set NAME or NAME@VERSION (`homeo train curate`), or a .jsonl"
                       " file of {\"messages\": [...]} lines.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The GGUF adapter to write.")],
    base: Annotated[Path | None, typer.Option(
        help="The GGUF base model (default: HOMEO_LOCAL_MODEL_PATH, else the shipped"
             " SmolLM2).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps, one example each.")] = 20,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="AdamW's rate.")] = 1e-3,
    rank: Annotated[int, typer.Option(min=1, max=256, help="LoRA rank.")] = 8,
    threads: Annotated[int, typer.Option(min=1, max=64, help="torch threads.")] = 1,
    register_as: Annotated[str | None, typer.Option(
        "--register", help="Register the adapter in the model registry under this id.")] = None,
    parent: Annotated[str | None, typer.Option(
        help="With --register: the registered base model's id.")] = None,
    deployment: Annotated[str | None, typer.Option(
        help="With --register: the HOMEO_MODELS deployment (with `lora:`) that serves"
             " it.")] = None,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Fine-tune the local GGUF model with LoRA on CPU and write a GGUF adapter that
    a local deployment serves with `lora: PATH`."""
    try:
        from homeo.evolve.lora import (
            LoraConfig,
            StepReport,
            TrainingError,
            example_from,
            read_examples,
            train_lora,
        )
        from homeo.llm.base import ModelError
        from homeo.llm.providers.local import default_model_path
    except ImportError:
        fail("LoRA training needs the [train] extra: pip install 'homeo[train]'")
    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        store = runtime.backends.store
        try:
            gguf = base or (Path(settings.local_model_path) if settings.local_model_path
                            else default_model_path())
        except ModelError as error:
            fail(str(error))
        if not gguf.is_file():
            fail(f"no GGUF base model at {gguf}")
        label: str | None = None
        try:
            if data.endswith(".jsonl"):
                train, validation = read_examples(Path(data)), []
            else:
                name, _, version = data.partition("@")
                if version and not version.isdigit():
                    fail(f"--data {data!r}: a version is a number, as in {name}@2")
                dataset = store.get_dataset(settings.default_tenant, name,
                                            int(version) if version else None)
                if dataset is None:
                    fail(f"no data set {data!r} in tenant {settings.default_tenant!r};"
                         " make one with `homeo train curate`")
                if not dataset.train:
                    fail(f"data set {data!r} has no training examples")
                label = f"{dataset.name}@{dataset.version}"
                train = [example_from(e) for e in dataset.train]
                validation = [example_from(e) for e in dataset.validation]
        except TrainingError as error:
            fail(str(error))
        out = Console(stderr=True, soft_wrap=True, highlight=False)

        def progress(step: StepReport) -> None:
            if not as_json:
                out.print(f"step {step.step}/{step.steps}  loss {step.loss:.4f}"
                          f"  {step.seconds:.2f}s", markup=False)

        console.print(f"training a rank-{rank} LoRA of {gguf.name} on {len(train)} examples"
                      f" for {steps} steps ({threads} thread(s))", markup=False)
        try:
            report = train_lora(train, gguf, output,
                                LoraConfig(steps=steps, learning_rate=learning_rate, rank=rank,
                                           alpha=2 * rank, threads=threads),
                                validation=validation, on_step=progress)
        except TrainingError as error:
            fail(str(error))
        result = {**report.as_json(), "data": label or data}
        if register_as:
            from homeo.evolve.registry import RegistryError, register
            from homeo.store.base import StoreError

            try:
                register(store, register_as, report.adapter.resolve(), report.sha256,
                         deployment=deployment, parent=parent, dataset=label,
                         metrics={"last_loss": report.last_loss,
                                  "validation_loss": report.validation_loss},
                         now=time.time())
            except (RegistryError, StoreError) as error:
                fail(f"the adapter is at {report.adapter}, but registering it failed: {error}")
            result["registered"] = register_as
    if as_json:
        print_json(result)
        return
    validation_text = ("" if report.validation_loss is None
                       else f", validation loss {report.validation_loss:.4f}")
    print(f"wrote {report.adapter} ({report.seconds:.1f}s): loss {report.first_loss:.4f} ->"
          f" {report.last_loss:.4f}{validation_text}; sha256 {report.sha256}")
    print("serve it with a HOMEO_MODELS deployment: "
          + json.dumps({"model": "local", "lora": str(report.adapter.resolve())}))
