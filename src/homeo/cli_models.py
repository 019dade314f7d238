"""`homeo models`: the one-time steps that prepare the in-process models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from homeo.cli_common import CONTEXT, console, fail, settings_or_exit

models_app = typer.Typer(help="Prepare the in-process models (run by scripts/setup).",
                         no_args_is_help=True, context_settings=CONTEXT)


@models_app.command("convert-minilm")
def convert_minilm(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o",
        help="Write the export here (default: HOMEO_EMBED_ONNX_DIR, else beside the"
             " Python environment).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Redo an export that is already there.")] = False,
) -> None:
    """Export the shipped all-MiniLM-L6-v2 to ONNX once, with torch, so embeddings
    run on ONNX Runtime without torch. Checked against sentence-transformers
    before it is installed; needs no network."""
    from homeo.llm.base import ModelError
    from homeo.llm.providers.minilm import DEFAULT_MODEL_NAME, default_model_dir
    from homeo.llm.providers.minilm_export import export_minilm
    from homeo.llm.providers.minilm_onnx import MANIFEST_FILE, default_onnx_dir

    settings = settings_or_exit()
    target = (output or settings.embed_onnx_dir or default_onnx_dir()).resolve()
    if (target / MANIFEST_FILE).exists() and not force:
        console.print(f"minilm: the ONNX export is already at {target} (--force redoes it)",
                      markup=False)
        return
    try:
        report = export_minilm(default_model_dir(), target, model_name=DEFAULT_MODEL_NAME,
                               force=force)
    except ModelError as error:
        fail(str(error))
    console.print(f"minilm: exported to {report.directory} ({report.graph_bytes / 2**20:.0f}"
                  f" MiB); largest difference from sentence-transformers"
                  f" {report.max_abs_diff:.1e}", markup=False)
