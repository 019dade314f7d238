"""`homeo eval run --ray local`: an evaluation's runs worked by Ray tasks on a
local Ray instance, scored by the command. A subprocess on a real SQLite file;
the scripted agent of tests/support/scriptkit.py answers with the id of the
process that ran it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.test_cli_batch import HOMEO, RAY_DEADLINE_SECONDS, homeo_env, psutil_or_skip, runs_in

# One local Ray cluster at a time (never two xdist workers' at once).
pytestmark = pytest.mark.xdist_group("ray")

SUITE = """
name: whoami
cases:
""" + "".join(f"""  - id: case-{n}
    input: "question {n}"
    expect: {{regex: "^question {n} from pid \\\\d+$"}}
""" for n in range(4)) + """  - id: wrong
    input: "question 9"
    expect: {contains: "an answer it never gives"}
"""


@pytest.mark.slow
@pytest.mark.timeout(2 * RAY_DEADLINE_SECONDS + 60)
def test_on_local_ray_the_runs_run_in_ray_tasks_once_each_and_are_scored(
    tmp_path: Path,
) -> None:
    psutil_or_skip()
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "whoami.yaml").write_text(
        "name: whoami\nmodel: scripted:scriptkit:whoami_model\nmax_steps: 2\n")
    suite, data = tmp_path / "suite.yaml", tmp_path / "data"
    suite.write_text(SUITE)
    process = subprocess.Popen(
        [str(HOMEO), "eval", "run", str(suite), "--agent", "whoami", "--ray", "local",
         "--slice-size", "2", "--json", "--agents-dir", str(agents), "--data-dir", str(data)],
        env=homeo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=2 * RAY_DEADLINE_SECONDS)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    report = json.loads(stdout)
    assert [(c["case_id"], c["status"], c["passed"]) for c in report["cases"]] == [
        *((f"case-{n}", "succeeded", True) for n in range(4)), ("wrong", "succeeded", False)]
    assert report["score"]["value"] == pytest.approx(4 / 5)
    runs = runs_in(data)
    assert sorted(r["id"] for r in runs) == sorted(c["run_id"] for c in report["cases"])
    pids = {int(re.search(r"from pid (\d+)$", r["output"]).group(1)) for r in runs}
    assert process.pid not in pids  # every step ran in a Ray task's process


def test_ray_options_are_checked_before_anything_runs(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    result = subprocess.run(
        [str(HOMEO), "eval", "run", str(suite), "--agent", "whoami", "--ray", "local",
         "--slice-size", "0", "--data-dir", str(tmp_path / "data")],
        env=homeo_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--slice-size" in result.stderr
