"""`homeo batch run`: in this process through typer's CliRunner (the runs
executed by the command's own worker pool), and as a subprocess on a local Ray
instance whose task process is SIGKILLed midway. Real SQLite files; the
scripted agents of tests/support/scriptkit.py and gatekit.py."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.support.clikit import homeo, no_homeo_env  # noqa: F401

# One local Ray cluster at a time (never two xdist workers' at once).
pytestmark = pytest.mark.xdist_group("ray")

SUPPORT = Path(__file__).parent / "support"
HOMEO = Path(sys.executable).parent / "homeo"
RAY_DEADLINE_SECONDS = 240  # Ray starts slowly on a busy machine
TASK_TITLE = "ray::homeo_batch_slice"  # a Ray worker's process title while it runs our task


def _support(name: str):  # noqa: ANN202 (a module of tests/support)
    sys.path.insert(0, str(SUPPORT))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(SUPPORT))


@pytest.fixture
def agents(tmp_path: Path) -> Path:
    return _support("scriptkit").write_agents(tmp_path / "agents", ["calc", "broken"])


def write_inputs(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def runs_in(data: Path) -> list[dict]:
    listed = homeo("runs", "list", "--json", "--limit", "500", "--data-dir", str(data))
    assert listed.exit_code == 0, listed.stderr
    return json.loads(listed.stdout)["runs"]


def test_results_are_complete_and_running_it_again_makes_no_new_run(
    tmp_path: Path, agents: Path
) -> None:
    inputs = write_inputs(tmp_path / "in.jsonl", '{"input": "6*7", "id": "answer"}',
                          '{"input": "2+3"}', "", '{"input": "10/4", "id": 9}')
    data, out = tmp_path / "data", tmp_path / "results.jsonl"
    args = ("batch", "run", "calc", str(inputs), "--out", str(out), "--json",
            "--agents-dir", str(agents), "--data-dir", str(data))
    done = homeo(*args)
    assert done.exit_code == 0, done.stderr
    rows = sorted(rows_of(out), key=lambda row: row["line"])
    assert [(r["line"], r["id"], r["status"], r["output"], r["error"]) for r in rows] == [
        (1, "answer", "succeeded", "6*7 = 42", None),
        (2, "line-2", "succeeded", "2+3 = 5", None),
        (4, "9", "succeeded", "10/4 = 2.5", None),
    ]
    assert all(row["output_tokens"] > 0 for row in rows)
    summary = json.loads(done.stdout)
    assert summary["lines"] == 3 and summary["statuses"] == {"succeeded": 3}
    runs = runs_in(data)
    assert sorted(run["id"] for run in runs) == sorted(row["run_id"] for row in rows)
    assert {run["status"] for run in runs} == {"succeeded"}

    again = homeo(*args)  # the same command: the same batch, its runs picked up
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["batch_id"] == summary["batch_id"]
    assert sorted(rows_of(out), key=lambda row: row["line"]) == rows
    assert len(runs_in(data)) == 3


def test_bad_lines_are_reported_with_their_numbers_and_the_others_run(
    tmp_path: Path, agents: Path
) -> None:
    inputs = write_inputs(
        tmp_path / "in.jsonl",
        '{"input": "1+1", "id": "a"}',
        "{not json",
        '["1+1"]',
        '{"id": "b"}',
        '{"input": "1+1", "topic": "x"}',
        '{"input": "2+2", "id": "a"}',
        '{"input": "3+3"}',
    )
    out = tmp_path / "results.jsonl"
    done = homeo("batch", "run", "calc", str(inputs), "--out", str(out),
                 "--agents-dir", str(agents), "--data-dir", str(tmp_path / "data"))
    assert done.exit_code == 1  # some lines were invalid
    said = [line for line in done.stderr.splitlines() if "(skipped)" in line]
    assert said == [
        f"homeo: {inputs} line 2: not JSON (Expecting property name enclosed in double quotes"
        " at column 2) (skipped)",
        f'homeo: {inputs} line 3: not a JSON object; write {{"input": "the task"}} (skipped)',
        f'homeo: {inputs} line 4: "input" is missing or not a non-empty string (skipped)',
        f"homeo: {inputs} line 5: unknown field(s) topic; a line has id, input, user (skipped)",
        f"homeo: {inputs} line 6: id 'a' is used by line 1 too; give each line its own id"
        " (skipped)",
    ]
    rows = {row["line"]: row for row in rows_of(out)}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 7]
    assert {n: rows[n]["status"] for n in rows} == {1: "succeeded", 2: "invalid", 3: "invalid",
                                                    4: "invalid", 5: "invalid", 6: "invalid",
                                                    7: "succeeded"}
    assert rows[7]["output"] == "3+3 = 6"


def test_a_failing_agent_exits_1_with_each_error_in_the_results(
    tmp_path: Path, agents: Path
) -> None:
    inputs = write_inputs(tmp_path / "in.jsonl", '{"input": "try"}', '{"input": "again"}')
    done = homeo("batch", "run", "broken", str(inputs), "--agents-dir", str(agents),
                 "--data-dir", str(tmp_path / "data"))
    assert done.exit_code == 1
    rows = [json.loads(line) for line in done.stdout.splitlines()]  # no --out: stdout
    assert [row["status"] for row in rows] == ["failed", "failed"]
    assert all(row["error"].startswith("model scripted: scripted refusal") for row in rows)


def test_what_cannot_run_at_all_exits_2_and_says_why(tmp_path: Path, agents: Path) -> None:
    data = str(tmp_path / "data")
    good = write_inputs(tmp_path / "good.jsonl", '{"input": "1+1"}')
    bad = write_inputs(tmp_path / "bad.jsonl", "nope")

    unknown = homeo("batch", "run", "nobody", str(good), "--agents-dir", str(agents),
                    "--data-dir", data)
    assert unknown.exit_code == 2
    assert unknown.stderr.strip() == ("homeo: unknown agent 'nobody';"
                                      " agents defined: broken, calc")
    empty = homeo("batch", "run", "calc", str(bad), "--agents-dir", str(agents),
                  "--data-dir", data)
    assert empty.exit_code == 2
    assert empty.stderr.strip().splitlines()[-1] == (
        f'homeo: {bad} has no valid line; a line is a JSON object such as'
        ' {"input": "the task", "id": "a1"}')
    missing = homeo("batch", "run", "calc", str(tmp_path / "none.jsonl"), "--data-dir", data)
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    summary = homeo("batch", "run", "calc", str(good), "--json", "--data-dir", data)
    assert summary.exit_code == 2 and "give --out RESULTS.jsonl" in summary.stderr
    assert runs_in(tmp_path / "data") == []


# --- on Ray ------------------------------------------------------------------


def psutil_or_skip():  # noqa: ANN201 (the psutil module)
    """psutil and ray (homeo's ray extra), or skip; under CI=true, fail."""
    try:
        import psutil
        import ray  # noqa: F401
    except ImportError as error:
        message = f"homeo's ray extra is not installed ({error}): pip install 'homeo[ray]'"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return psutil


def homeo_env(**env: str) -> dict[str, str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    path = os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))
    return {**clean, "PYTHONPATH": path, **env}


def _until(what: str, check, deadline: float = RAY_DEADLINE_SECONDS):  # noqa: ANN001, ANN202
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {deadline} s")


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@pytest.mark.slow
@pytest.mark.timeout(2 * RAY_DEADLINE_SECONDS + 60)
def test_on_local_ray_a_killed_task_is_retried_without_a_second_run_all_on_loopback(
    tmp_path: Path,
) -> None:
    psutil = psutil_or_skip()
    agents = _support("gatekit").write_waiter(tmp_path / "agents")
    gate, data, out = tmp_path / "gate", tmp_path / "data", tmp_path / "results.jsonl"
    ids = [f"item-{n}" for n in range(4)]
    # Every run's tool step waits for `gate`: the runs are held mid-step until the test opens it.
    inputs = write_inputs(tmp_path / "in.jsonl",
                          *(json.dumps({"input": str(gate), "id": i}) for i in ids))
    process = subprocess.Popen(
        [str(HOMEO), "batch", "run", "waiter", str(inputs), "--out", str(out), "--ray", "local",
         "--slice-size", "1", "--agents-dir", str(agents), "--data-dir", str(data)],
        env=homeo_env(HOMEO_LEASE_SECONDS="3"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    me = psutil.Process(process.pid)
    started: dict[int, object] = {}  # Ray's processes, ended by the test if the command fails
    try:

        def task_processes() -> list:
            found = []
            for child in me.children(recursive=True):
                started.setdefault(child.pid, child)
                try:
                    if " ".join(child.cmdline()).startswith(TASK_TITLE):
                        found.append(child)
                except psutil.NoSuchProcess:
                    continue
            return found

        def running() -> bool:
            return data.exists() and any(r["status"] == "running" for r in runs_in(data))

        tasks = _until("a Ray task holding a run mid-step",
                       lambda: running() and task_processes())
        # Every socket Ray listens on, in every process it started, is on loopback.
        listening = []
        for child in [me, *me.children(recursive=True)]:
            try:
                listening += [(child.name(), c.laddr.ip, c.laddr.port)
                              for c in child.net_connections(kind="inet")
                              if c.status == psutil.CONN_LISTEN]
            except psutil.NoSuchProcess:
                continue
        names = {name for name, _, _ in listening}
        assert {"gcs_server", "raylet"} <= names, listening
        assert [s for s in listening if not _is_loopback(s[1])] == []

        victim = tasks[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(60)
        gate.touch()  # the runs may end now; the dead task's is resumed by its retry
        stdout, stderr = process.communicate(timeout=RAY_DEADLINE_SECONDS)
    finally:
        process.kill()
        for child in started.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()  # psutil checks it is still the process it found
    assert process.returncode == 0, stderr
    rows = rows_of(out)
    assert sorted(row["id"] for row in rows) == ids
    assert {row["status"] for row in rows} == {"succeeded"}
    assert {row["output"] for row in rows} == {f"{gate}: the file is there"}
    runs = runs_in(data)
    assert len(runs) == len(ids)  # every input ended with exactly one run
    assert sorted(run["id"] for run in runs) == sorted(row["run_id"] for row in rows)
