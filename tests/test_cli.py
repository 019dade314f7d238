"""The `homeo` command, run as a subprocess the way a user runs it.

Scripted agents come from tests/support/scriptkit.py (on PYTHONPATH)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

SUPPORT = Path(__file__).parent / "support"
HOMEO = Path(sys.executable).parent / "homeo"
COMMAND_DEADLINE_SECONDS = 60

pytestmark = pytest.mark.slow  # starts subprocesses


def homeo_env(**env: str) -> dict[str, str]:
    """The caller's environment without its HOMEO_* settings, plus `env`. The
    caller's PYTHONPATH is kept (after tests/support), so a worktree's sources
    are what the subprocess runs."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    path = os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))
    return {**clean, "PYTHONPATH": path, "COLUMNS": "60", **env}


def homeo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `homeo ARGS` with none of the caller's HOMEO_* settings, plus `env`."""
    return subprocess.run(
        [str(HOMEO), *args], env=homeo_env(**env),
        capture_output=True, text=True, timeout=COMMAND_DEADLINE_SECONDS,
    )


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    sys.path.insert(0, str(SUPPORT))
    try:
        import scriptkit
    finally:
        sys.path.remove(str(SUPPORT))
    return scriptkit.write_agents(tmp_path / "agents", ["echo", "calc", "broken"])


def step_lines(stdout: str) -> list[tuple[int, str, str, str]]:
    """(seq, kind, name, status) of each `step` line `homeo run` printed."""
    found = re.findall(r"^  step (\d+) (\w+)\s+(\S+)\s+(running|succeeded|failed)", stdout, re.M)
    return [(int(seq), kind, name, status) for seq, kind, name, status in found]


def test_run_prints_each_step_and_exits_0_on_success(tmp_path: Path, agents_dir: Path) -> None:
    done = homeo("run", "calc", "6*7", "--agents-dir", str(agents_dir),
                 "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"run run_[0-9a-f]{22} \(calc\) queued", lines[0])
    finished = [line for line in step_lines(done.stdout) if line[3] != "running"]
    assert finished == [(0, "model", "model", "succeeded"), (1, "tool", "calculate", "succeeded"),
                        (2, "model", "model", "succeeded")]
    assert re.fullmatch(r"succeeded \(\d+ in / \d+ out tokens\)", lines[-2])
    assert lines[-1] == "6*7 = 42"
    assert (tmp_path / "data" / "homeo.db").is_file()


def test_run_exits_1_when_the_run_fails(tmp_path: Path, agents_dir: Path) -> None:
    done = homeo("run", "broken", "try", "--agents-dir", str(agents_dir),
                 "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert step_lines(done.stdout)[-1] == (0, "model", "model", "failed")
    last = done.stdout.splitlines()[-1]
    assert last.startswith("failed: model scripted: scripted refusal: this model never answers")


def test_run_of_an_unknown_agent_names_it_and_exits_non_zero(
    tmp_path: Path, agents_dir: Path
) -> None:
    done = homeo("run", "nobody", "hello", "--agents-dir", str(agents_dir),
                 "--data-dir", str(tmp_path / "data"))
    assert done.returncode != 0
    assert "homeo: unknown agent 'nobody'; agents defined: broken, calc, echo" in done.stderr


def test_run_for_a_user_names_the_user_a_per_user_agent_needs(
    tmp_path: Path, agents_dir: Path
) -> None:
    (agents_dir / "concierge.yaml").write_text(
        "name: concierge\nmodel: scripted:scriptkit:echo_model\nmemory: {scope: user}\n")
    where = ("--agents-dir", str(agents_dir), "--data-dir", str(tmp_path / "data"))
    refused = homeo("run", "concierge", "hello", *where)
    assert refused.returncode == 1
    assert "homeo: agent 'concierge' keeps memory per user" in refused.stderr
    assert "`homeo run --user NAME`" in refused.stderr
    done = homeo("run", "concierge", "hello", "--user", "alice", "--json", *where)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["user"] == "alice"


def test_agents_lists_the_shipped_examples() -> None:
    done = homeo("agents")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in done.stdout.splitlines()}
    assert rows == {
        "assistant": ["local", "no"],
        "calculator": ["local", "calculate"],
        "careful-calc": ["local", "calculate"],
        "desk": ["local", "no"],
        "planner": ["local", "calculate"],
        "reviewer": ["local", "no"],
        "text-stats": ["local", "word_count"],
    }


def test_agents_lists_the_agents_dir_given(agents_dir: Path) -> None:
    done = homeo("agents", "--agents-dir", str(agents_dir))
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == ["broken", "calc", "echo"]


def test_agents_with_an_invalid_file_names_the_file_and_the_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: Not A Name\n")
    done = homeo("agents", "--agents-dir", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith(f"homeo: {tmp_path / 'bad.yaml'}: name: String should match")
    assert len(done.stderr.strip().splitlines()) == 1


def test_doctor_reports_the_storage_backends(tmp_path: Path) -> None:
    done = homeo("doctor", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert re.search(rf"^ok\s+sqlite\s+SQLite [\d.]+, WAL works in {re.escape(str(tmp_path))}$",
                     done.stdout, re.M)
    for name in ("postgresql", "redis"):
        assert re.search(rf"^(ok|missing)\s+{name}\s+\S", done.stdout, re.M), done.stdout
    # The setup installs the [local] extra, so the shipped models are there.
    assert re.search(r"^ok\s+local model\s+SmolLM2", done.stdout, re.M), done.stdout
    assert re.search(r"^ok\s+embedding model\s+all-MiniLM-L6-v2 \(\d+ MiB\)", done.stdout,
                     re.M), done.stdout
    # ... and export MiniLM to ONNX, which then runs the embeddings.
    assert re.search(r"^ok\s+embed runtime\s+ONNX Runtime, export at ", done.stdout,
                     re.M), done.stdout
    assert re.search(rf"^info\s+database in use\s+sqlite:///{re.escape(str(tmp_path))}/homeo.db$",
                     done.stdout, re.M)


def test_doctor_says_where_postgresql_vectors_are_searched(tmp_path: Path,
                                                          postgres_url: str) -> None:
    done = homeo("doctor", "--data-dir", str(tmp_path), HOMEO_DATABASE_URL=postgres_url)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^ok\s+postgresql\s+PostgreSQL [\d.]+ .*\bat postgresql://\S+; "
                     r"(no pgvector on this server|pgvector \S+ is available but not used): "
                     r"vectors are searched in process$", done.stdout, re.M), done.stdout


def test_doctor_checks_the_redis_server_the_queue_url_names(tmp_path: Path,
                                                            redis_url: str) -> None:
    done = homeo("doctor", "--data-dir", str(tmp_path), HOMEO_QUEUE_URL=redis_url)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^ok\s+redis\s+Redis [\d.]+ at redis://\S+ holds the queue$",
                     done.stdout, re.M), done.stdout
    assert re.search(r"^info\s+queue in use\s+redis://127\.0\.0\.1", done.stdout, re.M)
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = homeo("doctor", "--data-dir", str(tmp_path),
                 HOMEO_QUEUE_URL=f"redis://127.0.0.1:{port}/0")
    assert re.search(rf"^missing\s+redis\s+redis://127\.0\.0\.1:{port}/0: ", done.stdout,
                     re.M), done.stdout
    assert "fix: start Redis there or fix HOMEO_QUEUE_URL" in done.stdout


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["serve"], {"HOMEO_PORT": "abc"},
         "homeo: invalid setting HOMEO_PORT='abc': Input should be a valid integer"),
        (["serve", "--port", "0"], {},
         "homeo: invalid setting HOMEO_PORT=0: Input should be greater than or equal to 1"),
        (["worker"], {"HOMEO_LEASE_SECONDS": "-1"},
         "homeo: invalid setting HOMEO_LEASE_SECONDS='-1': Input should be greater than 0"),
        (["run", "echo", "hi"], {"HOMEO_DATABASE_URL": "mysql://x"},
         "homeo: invalid setting HOMEO_DATABASE_URL='mysql://x': Value error, must start with"),
        (["worker"], {"HOMEO_QUEUE_URL": "postgresql://x"},
         "homeo: invalid setting HOMEO_QUEUE_URL='postgresql://x': Value error, must start with"
         " redis://, rediss:// or unix:// (a Redis server), or be empty"),
        # Malformed JSON, once a 148-line traceback.
        (["serve"], {"HOMEO_MODELS": "{bad"},
         "homeo: invalid setting HOMEO_MODELS: not valid JSON (Expecting property name"),
        (["worker"], {"HOMEO_PRICES": "[1"},
         "homeo: invalid setting HOMEO_PRICES: not valid JSON (Expecting ',' delimiter at line 1"
         " column 3) (e.g. HOMEO_PRICES='{"),
        (["run", "echo", "hi"], {"HOMEO_TOOL_POLICY": "{"},
         "homeo: invalid setting HOMEO_TOOL_POLICY: not valid JSON"),
        (["doctor"], {"HOMEO_MCP_SERVERS": "nope"},
         "homeo: invalid setting HOMEO_MCP_SERVERS: not valid JSON (Expecting value"),
        (["doctor"], {"HOMEO_WORKERS": "two"},
         "homeo: invalid setting HOMEO_WORKERS='two': Input should be a valid integer, unable to"
         " parse string as an integer (e.g. HOMEO_WORKERS=2)"),
        (["serve"], {"HOMEO_OPENAI_BASE_URL": "api.openai.com"},
         "homeo: invalid setting HOMEO_OPENAI_BASE_URL='api.openai.com': Value error, must be an"
         " http:// or https:// URL with a host (e.g. HOMEO_OPENAI_BASE_URL=https://"),
        (["worker"], {"HOMEO_OTLP_ENDPOINT": "collector:4318"},
         "homeo: invalid setting HOMEO_OTLP_ENDPOINT='collector:4318': Value error"),
        (["run", "echo", "hi"], {"HOMEO_HTTP_TIMEOUT": "soon"},
         "homeo: invalid setting HOMEO_HTTP_TIMEOUT='soon': Value error, 'soon' is not a duration"
         " such as 5s, 500ms or 2m (e.g. HOMEO_HTTP_TIMEOUT=10s)"),
        (["doctor"], {"HOMEO_SANDBOX_MEMORY": "lots"},
         "homeo: invalid setting HOMEO_SANDBOX_MEMORY='lots': Value error"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    done = homeo(*args, **env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()  # one line, even on a 60-column terminal
    assert line.startswith(expected)


def test_an_unreachable_redis_queue_is_named_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = homeo("run", "echo", "hi", "--data-dir", str(tmp_path),
                 HOMEO_QUEUE_URL=f"redis://:secret@127.0.0.1:{port}/0")
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = (done.stdout + done.stderr).strip().splitlines()
    assert line.startswith(f"homeo: the Redis queue at redis://:***@127.0.0.1:{port}/0 does not"
                           " answer (")
    assert line.endswith("start Redis there or fix the queue URL") and "secret" not in line


def test_keys_create_list_and_revoke(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    created = homeo("keys", "create", "--tenant", "acme", "--name", "ci bot", "--role", "admin",
                    "--data-dir", data)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert re.fullmatch(r"hk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", key)  # stdout is the key alone
    key_id = key.split("_")[1]
    assert f"admin key {key_id} for tenant 'acme'" in created.stderr

    listed = homeo("keys", "list", "--data-dir", data)
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^{key_id}\s+acme\s+admin\s+active\s+\S+ \S+Z\s+ci bot$", listed.stdout,
                     re.M)
    assert key.split("_", 2)[2] not in listed.stdout  # never the secret

    revoked = homeo("keys", "revoke", key_id, "--data-dir", data)
    assert revoked.returncode == 0 and f"key {key_id} of tenant 'acme' is revoked" in (
        revoked.stderr)
    assert re.search(rf"^{key_id}\s+acme\s+admin\s+revoked",
                     homeo("keys", "list", "--data-dir", data).stdout, re.M)
    assert homeo("keys", "list", "--tenant", "globex", "--data-dir", data).stdout == ""


def test_keys_revoke_of_an_unknown_key_and_a_bad_tenant_say_what_is_wrong(tmp_path: Path
                                                                          ) -> None:
    data = str(tmp_path / "data")
    unknown = homeo("keys", "revoke", "0123456789abcdef", "--data-dir", data)
    assert unknown.returncode == 1
    assert "no API key '0123456789abcdef'; `homeo keys list` shows them" in unknown.stderr
    bad = homeo("keys", "create", "--tenant", "no spaces allowed", "--data-dir", data)
    assert bad.returncode == 2 and "default_tenant" in bad.stderr.lower()


def test_serve_on_a_port_in_use_says_so_in_one_line_before_doing_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = homeo("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line == (f"homeo: 127.0.0.1:{port} is already in use by another process; stop that"
                    " process, or serve on another port with --port (or HOMEO_PORT)")
    # Nothing was opened, so no admin key was made (and none shown) for a server that never ran.
    assert not (tmp_path / "data").exists()


# --- `homeo run` while a step waits (tests/support/gatekit.py) ----------------


@pytest.fixture
def waiter_dir(tmp_path: Path) -> Path:
    sys.path.insert(0, str(SUPPORT))
    try:
        import gatekit
    finally:
        sys.path.remove(str(SUPPORT))
    return gatekit.write_waiter(tmp_path / "agents")


class Lines:
    """A stream of a subprocess read line by line in a thread, so a test can wait
    for a line with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + COMMAND_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.lines.get(timeout=1))
                if found := re.search(pattern, self.seen[-1]):
                    return found
        raise AssertionError(f"no line matching {pattern!r} in {self.seen}")

    def rest(self) -> str:
        while True:
            try:
                self.seen.append(self.lines.get(timeout=5))
            except queue.Empty:
                return "".join(self.seen)


def start_waiter(gate: Path, agents: Path, data: Path) -> tuple[subprocess.Popen[str], Lines,
                                                                 Lines, str]:
    """`homeo run waiter GATE`, once its tool step is waiting for the file GATE."""
    process = subprocess.Popen(
        [str(HOMEO), "run", "waiter", str(gate), "--agents-dir", str(agents),
         "--data-dir", str(data)],
        env=homeo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out, err = Lines(process.stdout), Lines(process.stderr)  # type: ignore[arg-type]
    run_id = out.wait_for(r"^run (run_[0-9a-f]{22}) \(waiter\) queued$").group(1)
    out.wait_for(r"^  step 1 tool   wait_for_file\s+running  ")
    return process, out, err, run_id


def test_ctrl_c_pauses_the_run_after_its_step_and_says_how_to_resume_or_cancel(
    tmp_path: Path, waiter_dir: Path
) -> None:
    gate, data = tmp_path / "gate", tmp_path / "data"
    process, out, err, run_id = start_waiter(gate, waiter_dir, data)
    try:
        process.send_signal(signal.SIGINT)
        err.wait_for(rf"^homeo: Ctrl-C: run {run_id} pauses when its current step ends;"
                     " Ctrl-C again to leave now$")
        gate.touch()  # the step ends; the run pauses before the next one
        assert process.wait(COMMAND_DEADLINE_SECONDS) == 130
    finally:
        process.kill()
    assert err.rest().splitlines()[-1] == (
        f"homeo: run {run_id} is paused (queued): it resumes where it stopped when a worker runs"
        f" (`homeo worker`); to cancel it instead: `homeo runs cancel {run_id}`")
    assert re.search(r"^  step 1 tool   wait_for_file\s+succeeded \d+ ms  the file is there$",
                     out.rest(), re.M)
    shown = json.loads(homeo("runs", "show", run_id, "--json", "--data-dir", str(data)).stdout)
    assert shown["status"] == "queued"
    assert [(s["seq"], s["status"]) for s in shown["steps"]] == [(0, "succeeded"),
                                                                (1, "succeeded")]
    # What the message says to do works: a worker finishes it from step 2.
    worker = subprocess.Popen([str(HOMEO), "worker", "--workers", "1", "--agents-dir",
                               str(waiter_dir), "--data-dir", str(data)],
                              env=homeo_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        followed = homeo("runs", "events", run_id, "--data-dir", str(data))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(COMMAND_DEADLINE_SECONDS)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert followed.stdout.splitlines()[-1] == f"{gate}: the file is there"
    assert step_lines(followed.stdout)[-1] == (2, "model", "model", "succeeded")


def test_a_second_ctrl_c_leaves_at_once_and_says_what_becomes_of_the_run(
    tmp_path: Path, waiter_dir: Path
) -> None:
    # The gate never opens: the step's thread waits far past the deadline, so
    # only leaving without waiting for it lets the command end.
    process, out, err, run_id = start_waiter(tmp_path / "gate", waiter_dir, tmp_path / "data")
    try:
        process.send_signal(signal.SIGINT)
        err.wait_for(rf"^homeo: Ctrl-C: run {run_id} pauses")
        process.send_signal(signal.SIGINT)
        assert process.wait(COMMAND_DEADLINE_SECONDS) == 130
    finally:
        process.kill()
    assert err.rest().splitlines()[-1] == (
        f"homeo: left run {run_id} mid-step: it stays running until its lease expires (within"
        " 30 s), then a worker (`homeo worker`) resumes it, repeating that step only if it is"
        f" safe to; to cancel it instead: `homeo runs cancel {run_id}`")
    cancelled = homeo("runs", "cancel", run_id, "--data-dir", str(tmp_path / "data"))
    assert cancelled.returncode == 0, cancelled.stderr


def test_on_a_terminal_a_spinner_shows_the_running_step_and_its_time(
    tmp_path: Path, waiter_dir: Path
) -> None:
    gate = tmp_path / "gate"
    terminal, child_side = pty.openpty()
    process = subprocess.Popen(
        [str(HOMEO), "run", "waiter", str(gate), "--agents-dir", str(waiter_dir),
         "--data-dir", str(tmp_path / "data")],
        env=homeo_env(TERM="xterm"), stdout=child_side, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    os.close(child_side)
    shown = b""
    try:
        deadline = time.monotonic() + COMMAND_DEADLINE_SECONDS
        # The elapsed time counts up while the step waits: wait to see it pass 1 s.
        while not re.search(rb"step 1 tool wait_for_file  [1-9]\d*\.\ds", shown):
            assert time.monotonic() < deadline, shown.decode(errors="replace")
            if select.select([terminal], [], [], 1)[0]:
                shown += os.read(terminal, 65536)
        gate.touch()
        while True:
            if select.select([terminal], [], [], 1)[0]:
                try:
                    chunk = os.read(terminal, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif process.poll() is not None:
                break
            assert time.monotonic() < deadline, shown.decode(errors="replace")
        assert process.wait(COMMAND_DEADLINE_SECONDS) == 0
    finally:
        process.kill()
        os.close(terminal)
    text = shown.decode()
    assert re.search(r"step 1 tool   wait_for_file\s+succeeded \d+ ms  the file is there", text)
    assert text.rstrip().endswith(f"{gate}: the file is there")


def test_piped_output_is_plain_lines_with_tool_arguments_whole(
    tmp_path: Path, agents_dir: Path
) -> None:
    long = "+".join(["1"] * 100)  # 199 characters: once cut at 100
    done = homeo("run", "calc", long, "--agents-dir", str(agents_dir),
                 "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\x1b" not in done.stdout and "\r" not in done.stdout  # no spinner when piped
    call = next(line for line in done.stdout.splitlines()
                if re.match(r"  step 0 model  model\s+succeeded", line))
    assert call.endswith(f'  calls calculate {{"expression": "{long}"}}')
    assert done.stdout.splitlines()[-1] == f"{long} = 100"


def test_a_very_long_tool_argument_is_cut_with_a_note_of_how_much(
    tmp_path: Path, agents_dir: Path
) -> None:
    huge = "+".join(["1"] * 1500)  # 2,999 characters
    done = homeo("run", "calc", huge, "--agents-dir", str(agents_dir),
                 "--data-dir", str(tmp_path / "data"))
    call = next(line for line in done.stdout.splitlines()
                if re.match(r"  step 0 model  model\s+succeeded", line))
    shown = f'{{"expression": "{huge}"}}'
    assert call.endswith(f"  calls calculate {shown[:2000]}… ({len(shown) - 2000} more"
                         " characters)")


def test_keys_create_makes_each_role_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    for role in ("viewer", "member", "operator", "admin"):
        created = homeo("keys", "create", "--tenant", "acme", "--role", role, "--data-dir", data)
        assert created.returncode == 0 and f"{role} key " in created.stderr, created.stderr
    listed = homeo("keys", "list", "--data-dir", data).stdout
    assert sorted(re.findall(r"^\S+\s+acme\s+(\w+)\s+active", listed, re.M)) == [
        "admin", "member", "operator", "viewer"]
    refused = homeo("keys", "create", "--role", "owner", "--data-dir", data)
    assert refused.returncode == 2 and "'viewer', 'member', 'operator', 'admin'" in refused.stderr
