"""The README's tutorial, run as written: every ```bash block of its section,
in order, in a fresh folder (with this checkout's .venv linked in), each in
its own bash with the `export` lines of the blocks before it. `RUN_ID` is what
a reader copies from `homeo run`'s output. Real subprocesses, the shipped
local model and embedder, a SQLite file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK_SECONDS = 600
RUN_ID = re.compile(r"\brun_[0-9a-f]{22}\b")

pytestmark = pytest.mark.slow  # loads the local model in several processes


def tutorial_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Tutorial\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    blocks = tutorial_blocks()
    assert len(blocks) == 5, "the test expects the tutorial's five blocks"
    # The environment running this test: a checkout's own .venv, wherever it is.
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    exports: list[str] = []
    run_id = None
    outputs = []
    for number, block in enumerate(blocks):
        if run_id is not None:
            block = block.replace("RUN_ID", run_id)
        assert "RUN_ID" not in block, f"block {number} needs a run id no block printed"
        done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + "\n".join(exports)
                               + "\n" + block], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=BLOCK_SECONDS)
        waits = "homeo run " in block  # exit 3: the run waits for a person
        assert done.returncode == (3 if waits else 0), (number, block, done.stdout,
                                                         done.stderr)
        exports += [line for line in block.splitlines() if line.startswith("export ")]
        if waits:
            run_id = RUN_ID.search(done.stdout).group(0)
        outputs.append(done.stdout + done.stderr)
    settings, memory, agents, ran, approved = outputs
    assert "prices: 1 added" in memory and "A cup of coffee costs 3 euros" in memory
    assert agents.split()[0] == "cashier"
    assert 'waiting for approval: calculate {"expression": "4 * 3"}' in ran
    assert run_id in approved and "cashier" in approved
    assert "queued again" in approved
    assert "succeeded" in approved and "output   4 * 3 = 12 euros" in approved
    assert "prices.md" in approved  # the retrieve step's source
    # Everything it wrote stayed in the tutorial's folder.
    assert (tmp_path / "tutorial" / "data").is_dir()
    assert sorted(p.name for p in (tmp_path / "tutorial" / "agents").iterdir()) == [
        "cashier.yaml"]
