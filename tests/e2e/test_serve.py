"""`homeo serve` as a real subprocess: runs submitted over HTTP are worked by its
in-process workers, and SIGTERM stops it cleanly.

The scripted agents come from tests/support/scriptkit.py, on the subprocess's
PYTHONPATH.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

SUPPORT = Path(__file__).parent.parent / "support"
HOMEO = Path(sys.executable).parent / "homeo"
START_DEADLINE_SECONDS = 30.0
STOP_DEADLINE_SECONDS = 30.0
FINAL = {"succeeded", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any HOMEO_* setting of the caller's, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    path = os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path, "HOMEO_LOG_LEVEL": "warning", **extra}


def scripted_agents(folder: Path, names: list[str]) -> Path:
    """Write the YAML of these scriptkit agents into `folder`."""
    sys.path.insert(0, str(SUPPORT))
    try:
        import scriptkit
    finally:
        sys.path.remove(str(SUPPORT))
    return scriptkit.write_agents(folder, names)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    client: httpx.Client
    data_dir: Path
    stderr: Path

    def errors(self) -> str:
        return self.stderr.read_text()[-3000:]

    def stop(self) -> int:
        """SIGTERM, then the exit status (failing if it does not exit in time)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"homeo serve ignored SIGTERM for {STOP_DEADLINE_SECONDS}s")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []
    keys: list[str] = []

    def start(*args: str, **env: str) -> Server:
        """`homeo serve` on tmp_path/data; its client sends the key the first
        serve printed (a data dir with keys gets no new one)."""
        port = free_port()
        data_dir = tmp_path / "data"
        stderr = tmp_path / f"serve{len(started)}.err"
        with stderr.open("wb") as errors:
            process = subprocess.Popen(
                [str(HOMEO), "serve", "--port", str(port), "--data-dir", str(data_dir), *args],
                env=clean_env(**env), stdout=subprocess.DEVNULL, stderr=errors,
            )
        server = Server(process, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30),
                        data_dir, stderr)
        started.append(server)
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while True:
            assert process.poll() is None, f"homeo serve exited: {server.errors()}"
            assert time.monotonic() < deadline, f"no /healthz: {server.errors()}"
            try:
                if server.client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        printed = re.findall(r"hk_[0-9a-f]{16}_[A-Za-z0-9_-]+", server.errors())
        assert printed or keys, f"the first homeo serve printed no API key: {server.errors()}"
        keys.extend(printed)
        server.client.headers["authorization"] = f"Bearer {keys[0]}"
        return server

    yield start
    for server in started:
        server.client.close()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def wait_until_final(client: httpx.Client, run_ids: list[str], deadline_seconds: float
                     ) -> list[dict]:
    deadline = time.monotonic() + deadline_seconds
    while True:
        runs = [client.get(f"/v1/runs/{run_id}").json() for run_id in run_ids]
        if all(run["status"] in FINAL for run in runs):
            return runs
        assert time.monotonic() < deadline, [(r["id"], r["status"]) for r in runs]
        time.sleep(0.1)


@pytest.mark.slow
def test_serve_works_runs_submitted_over_http_and_stops_on_sigterm(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    agents = scripted_agents(tmp_path / "agents", ["echo", "calc"])
    server = start_server("--agents-dir", str(agents), "--workers", "3",
                          HOMEO_POLL_SECONDS="0.05")
    client = server.client
    assert client.get("/readyz").json() == {
        "status": "ready", "checks": {"store": "ok", "workers": "ok"}}
    assert sorted(agent["name"] for agent in client.get("/v1/agents").json()) == ["calc", "echo"]

    expressions = {f"{n} * {n + 3}": n * (n + 3) for n in range(8)}
    submitted: dict[str, str] = {}
    for expression in expressions:
        response = client.post("/v1/runs", json={"agent": "calc", "input": expression})
        assert response.status_code == 202, response.text
        submitted[response.json()["id"]] = f"{expression} = {expressions[expression]}"
    for text in ("first", "second"):
        response = client.post("/v1/runs", json={"agent": "echo", "input": text})
        assert response.status_code == 202, response.text
        submitted[response.json()["id"]] = f"echo: {text}"

    runs = wait_until_final(client, list(submitted), START_DEADLINE_SECONDS)
    assert {run["id"]: (run["status"], run["output"]) for run in runs} == {
        run_id: ("succeeded", output) for run_id, output in submitted.items()}
    for run in runs:
        kinds = [step["kind"] for step in run["steps"]]
        assert kinds == (["model", "tool", "model"] if run["agent"] == "calc" else ["model"])
    listed = client.get("/v1/runs", params={"status": "succeeded", "limit": 100}).json()
    assert sorted(run["id"] for run in listed["runs"]) == sorted(submitted)

    assert server.stop() == 0, server.errors()
    assert "Traceback" not in server.errors(), server.errors()
    # The database was closed on the way out: SQLite removes its WAL file then.
    assert (server.data_dir / "homeo.db").is_file()
    assert not (server.data_dir / "homeo.db-wal").exists()


def test_serve_ignores_a_forged_forwarded_address(start_server: Callable[..., Server]) -> None:
    # Failed key checks are throttled per client address; a guesser naming a new
    # address in X-Forwarded-For each time must still be throttled as itself.
    server = start_server()
    wrong = {"authorization": "Bearer hk_0123456789abcdef_" + "a" * 43}
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    for n in itertools.count():
        forged = {**wrong, "x-forwarded-for": f"10.9.{n // 250}.{n % 250}"}
        response = server.client.get("/v1/agents", headers=forged)
        if response.status_code != 401:
            break
        assert time.monotonic() < deadline, "never throttled"
    assert response.status_code == 429, response.text
    assert "from 127.0.0.1" in response.json()["error"]["message"]


@pytest.mark.slow
def test_serve_with_workers_0_accepts_runs_but_leaves_them_queued(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    agents = scripted_agents(tmp_path / "agents", ["echo"])
    server = start_server("--agents-dir", str(agents), "--workers", "0")
    response = server.client.post("/v1/runs", json={"agent": "echo", "input": "later"})
    assert response.status_code == 202
    assert server.client.get("/readyz").json()["checks"]["workers"].startswith("none")
    metrics = server.client.get("/metrics").text
    assert "homeo_queue_depth 1.0" in metrics.splitlines()
    assert server.stop() == 0, server.errors()


@pytest.mark.slow
def test_the_shipped_calculator_agent_succeeds_through_serve(
    start_server: Callable[..., Server]
) -> None:
    """The real local model, the default agents folder; the prose is not checked."""
    server = start_server()
    response = server.client.post(
        "/v1/runs", json={"agent": "calculator", "input": "What is 17 * 23?"})
    assert response.status_code == 202, response.text
    (run,) = wait_until_final(server.client, [response.json()["id"]], 300)
    assert run["status"] == "succeeded", (run["error"], run["steps"])
    assert any(step["kind"] == "model" for step in run["steps"])
    assert server.stop() == 0, server.errors()


@pytest.mark.slow
def test_the_readme_openai_snippet_works_against_serve_with_its_printed_key(
    start_server: Callable[..., Server]
) -> None:
    """README's Python example, as written, on the default aliases: the local
    chat model and the in-process embedding model, offline."""
    server = start_server("--workers", "0")
    key = server.client.headers["authorization"].removeprefix("Bearer ")
    base_url = str(server.client.base_url).rstrip("/") + "/v1"
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)
    chat = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Hi"}], max_tokens=16)
    assert chat.choices[0].message.content and chat.usage.completion_tokens > 0
    embedded = client.embeddings.create(model="embedding", input=["a cat", "a kitten"])
    assert [len(item.embedding) for item in embedded.data] == [384, 384]
    assert sorted(model.id for model in client.models.list()) == ["default", "embedding"]
    client.close()
    assert server.stop() == 0, server.errors()
