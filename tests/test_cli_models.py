"""`homeo models convert-minilm`: the one-time ONNX export, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from homeo.llm.providers.minilm_onnx import MANIFEST_FILE
from tests.support.clikit import homeo, no_homeo_env  # noqa: F401  (the fixture applies here)


def test_an_existing_export_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"model_name": "m"}))

    done = homeo("models", "convert-minilm", "--output", str(tmp_path))

    assert done.exit_code == 0, done.output
    assert done.output.strip() == (f"minilm: the ONNX export is already at {tmp_path}"
                                   " (--force redoes it)")
    assert [path.name for path in tmp_path.iterdir()] == [MANIFEST_FILE]


def test_an_unwritable_output_exits_1_and_says_where(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    done = homeo("models", "convert-minilm", "--output", str(blocker / "export"))

    assert done.exit_code == 1
    assert done.output.startswith(f"homeo: cannot write the export to {blocker / 'export'}:")
    assert blocker.read_text() == "not a directory"


def test_json_says_where_the_export_is_or_why_not(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"model_name": "m"}))
    kept = homeo("models", "convert-minilm", "--output", str(tmp_path), "--json")
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.stdout) == {"directory": str(tmp_path.resolve()), "exported": False}
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    refused = homeo("models", "convert-minilm", "--output", str(blocker / "export"), "--json")
    assert refused.exit_code == 1
    error = json.loads(refused.stdout)
    assert error["exit_code"] == 1
    assert error["error"].startswith(f"cannot write the export to {blocker / 'export'}:")
