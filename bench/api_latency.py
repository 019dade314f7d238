"""API latency: requests/s and P50/P90/P99 of `GET /v1/runs/{id}` on `homeo serve`.

`homeo serve --workers 0` runs as a subprocess on a free port of 127.0.0.1
with its own data dir and an API key made by `homeo keys create`; one run is
created through `POST /v1/runs` (with no workers it stays queued), then a load
generator holds a fixed number of connections busy on `GET /v1/runs/{id}`,
each request carrying the key, for a fixed time.

The baseline, in the same run and measured by the same generator: a minimal
FastAPI app, served by uvicorn the way `homeo serve` serves homeo (one
process, same uvicorn options), on the same path, answering the very bytes
homeo answers from a static dict. It runs twice: with an `async def` route
(the framework's floor) and with a plain `def` route, which FastAPI runs in
its thread pool as it runs homeo's routes. The gap from the second to homeo
is homeo's own work: its middleware, the API key check (a SHA-256 once
argon2 has passed), the access log, two SQLite reads and the response models.

Also measured: homeo with HOMEO_LOG_LEVEL=warning (no access log line), and
homeo's `/healthz` (middleware and logging, no database).

The generator is `wrk` when it is installed (apt-get install wrk), else a
small asyncio HTTP/1.1 keep-alive client in this process. Either way it runs on the same 2 cores
as the server, so the figures are a floor, not what a separate client would see.

    .venv/bin/python bench/api_latency.py
    .venv/bin/python bench/api_latency.py --duration 30 --concurrency 64 --generator python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import free_port, machine, table

HERE = Path(__file__).resolve()
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_SECONDS = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Load:
    requests: int
    errors: int  # non-2xx answers and socket errors
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


# --- the servers -----------------------------------------------------------------


def serve_baseline(port: int, body_file: Path, sync_route: bool) -> None:
    """The baseline app (runs in its own process, like `homeo serve`). With
    `sync_route` its route is a plain `def`, which FastAPI runs in a thread
    pool, as it runs homeo's routes."""
    import uvicorn
    from fastapi import FastAPI

    body = json.loads(body_file.read_text())
    app = FastAPI()
    if sync_route:

        @app.get("/v1/runs/{run_id}")
        def get_run_sync(run_id: str) -> dict:
            return body

    else:

        @app.get("/v1/runs/{run_id}")
        async def get_run(run_id: str) -> dict:
            return body

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Server:
    """A server subprocess on 127.0.0.1, stopped by its own pid on exit."""

    def __init__(self, command: list[str], port: int, log: Path, env: dict[str, str]) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **env}
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n"
                                   f"{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code in (200, 404):
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer within {START_TIMEOUT_SECONDS:g}s")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the load generators -----------------------------------------------------------

_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _wrk_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _WRK_UNITS[unit]


def load_wrk(url: str, concurrency: int, seconds: float, threads: int,
             headers: dict[str, str]) -> Load:
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds:g}s", "--latency",
               "--timeout", "10s", url]
    for name, value in headers.items():
        command[1:1] = ["-H", f"{name}: {value}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True,
                            timeout=seconds + 60).stdout
    percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)$", output, re.MULTILINE))
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", output)
    if total is None or len(percentiles) != 3:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    errors = 0
    if found := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(found.group(1))
    if found := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(n) for n in found.groups())
    return Load(
        requests=int(total.group(1)),
        errors=errors,
        seconds=_wrk_ms(total.group(2) + total.group(3)) / 1000,
        p50_ms=_wrk_ms(percentiles["50"]),
        p90_ms=_wrk_ms(percentiles["90"]),
        p99_ms=_wrk_ms(percentiles["99"]),
    )


def load_python(url: str, concurrency: int, seconds: float, threads: int,
                headers: dict[str, str]) -> Load:
    """`concurrency` keep-alive HTTP/1.1 connections on asyncio streams, each
    sending its next GET as soon as the last answer is in. Hand-written rather
    than httpx, whose per-request cost would make the client the bottleneck."""
    parsed = httpx.URL(url)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"GET {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}:{parsed.port}\r\n"
        f"{extra}\r\n"
    ).encode()

    async def run() -> Load:
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds

        async def connection() -> None:
            nonlocal errors
            reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
            try:
                while (began := time.perf_counter()) < deadline:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status_line, *headers = head.decode("latin-1").split("\r\n")
                    length = next(
                        (int(h.split(":", 1)[1]) for h in headers
                         if h.lower().startswith("content-length:")),
                        None,
                    )
                    if length is None:
                        raise RuntimeError(f"no Content-Length in the answer to {url}")
                    await reader.readexactly(length)
                    if status_line.split(" ", 2)[1] != "200":
                        errors += 1
                    latencies.append(time.perf_counter() - began)
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
            finally:
                writer.close()

        began = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        return Load(len(latencies), errors, elapsed, cuts[49] * 1e3, cuts[89] * 1e3,
                    cuts[98] * 1e3)

    return asyncio.run(run())


# --- the benchmark -----------------------------------------------------------------


Generate = Callable[[str, int, float, int, dict[str, str]], Load]


def measure(
    server: Server, path: str, args: argparse.Namespace, generate: Generate,
    headers: dict[str, str],
) -> tuple[Load, float]:
    """The load, and the server's CPU use during it (1.0 = one core busy). Every
    server gets the same headers (homeo's API key), so each reads the same bytes."""
    url = server.base + path
    if args.warmup > 0:
        generate(url, args.concurrency, args.warmup, args.wrk_threads, headers)
    cpu_before = server.cpu_seconds()
    load = generate(url, args.concurrency, args.duration, args.wrk_threads, headers)
    cpu = (server.cpu_seconds() - cpu_before) / load.seconds
    return load, cpu


def start_homeo(scratch: Path, name: str, log_level: str) -> tuple[Server, dict[str, str]]:
    """`homeo serve` on a new data dir, and the headers that carry an API key for it."""
    port = free_port()
    data_dir = scratch / name
    key = subprocess.run(
        [str(VENV_BIN / "homeo"), "keys", "create", "--data-dir", str(data_dir)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()
    command = [str(VENV_BIN / "homeo"), "serve", "--port", str(port), "--data-dir", str(data_dir),
               "--workers", "0"]
    server = Server(command, port, scratch / f"{name}.log", {"HOMEO_LOG_LEVEL": log_level})
    return server, {"authorization": f"Bearer {key}"}


def create_run(server: Server, headers: dict[str, str]) -> tuple[str, bytes]:
    """One queued run; returns its id and the body of GET /v1/runs/{id}."""
    created = httpx.post(f"{server.base}/v1/runs", headers=headers, timeout=10,
                         json={"agent": "assistant", "input": "What is homeostasis?"})
    created.raise_for_status()
    run_id = created.json()["id"]
    detail = httpx.get(f"{server.base}/v1/runs/{run_id}", headers=headers, timeout=10)
    detail.raise_for_status()
    return run_id, detail.content


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Requests/s and latency of GET /v1/runs/{id} against a minimal FastAPI app.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per server")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of untimed load first")
    parser.add_argument("--concurrency", type=int, default=16, help="connections kept busy")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto",
                        help="auto = wrk when installed, else a Python asyncio client")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk's -t (2 cores here)")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--body-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sync-route", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.body_file, args.sync_route)
        return 0

    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk"))
    if args.generator == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk), use --generator python")
    generate = load_wrk if use_wrk else load_python
    generator = f"wrk -t{args.wrk_threads}" if use_wrk else "asyncio keep-alive client"

    print(f"API latency: {args.concurrency} connections, {args.duration:g}s per server after"
          f" {args.warmup:g}s warm-up; generator: {generator}", flush=True)
    print(f"machine: {machine()}", flush=True)
    print("the load generator runs on the same cores as the server it measures", flush=True)

    rows: list[tuple[str, str, float]] = []
    baselines: list[tuple[str, str, float]] = []
    results: dict[str, Load] = {}
    scratch = Path(tempfile.mkdtemp(prefix="homeo-bench-api-"))
    try:
        homeo, auth = start_homeo(scratch, "homeo", "info")
        try:
            run_id, body = create_run(homeo, auth)
            results["homeo"], cpu = measure(homeo, f"/v1/runs/{run_id}", args, generate, auth)
            rows.append(("homeo GET /v1/runs/{id} (access log on, as shipped)", "homeo", cpu))
            results["healthz"], cpu = measure(homeo, "/healthz", args, generate, auth)
            rows.append(("homeo GET /healthz (no database)", "healthz", cpu))
        finally:
            homeo.stop()

        quiet, quiet_auth = start_homeo(scratch, "homeo-quiet", "warning")
        try:
            quiet_id, _ = create_run(quiet, quiet_auth)
            results["quiet"], cpu = measure(quiet, f"/v1/runs/{quiet_id}", args, generate,
                                            quiet_auth)
            rows.append(("homeo GET /v1/runs/{id}, HOMEO_LOG_LEVEL=warning", "quiet", cpu))
        finally:
            quiet.stop()

        body_file = scratch / "body.json"
        body_file.write_bytes(body)
        for key, label, extra in (
            ("baseline", "baseline: minimal FastAPI, async def, static JSON", []),
            ("baseline-sync", "minimal FastAPI, sync def (thread pool)",
             ["--sync-route"]),
        ):
            port = free_port()
            baseline = Server(
                [sys.executable, str(HERE), "--serve-baseline", str(port), "--body-file",
                 str(body_file), *extra],
                port, scratch / f"{key}.log", {},
            )
            try:
                answer = httpx.get(f"{baseline.base}/v1/runs/{run_id}", timeout=10)
                if answer.content != body:
                    raise RuntimeError("the baseline does not answer homeo's body")
                results[key], cpu = measure(baseline, f"/v1/runs/{run_id}", args, generate,
                                            auth)
                baselines.append((label, key, cpu))
            finally:
                baseline.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    base_rate = results["baseline"].rate
    lines = []
    for label, key, cpu in baselines + rows:
        load = results[key]
        lines.append([
            label,
            f"{load.rate:,.0f}",
            f"{load.p50_ms:.2f}",
            f"{load.p90_ms:.2f}",
            f"{load.p99_ms:.2f}",
            f"{load.errors}",
            f"{cpu * 100:.0f}%",
            f"{load.rate / base_rate:.2f}x",
        ])
    print()
    print(f"response body: {len(body)} bytes of JSON")
    print(table(["server and path", "req/s", "P50 ms", "P90 ms", "P99 ms", "errors",
                 "server CPU", "vs baseline"], lines))
    print()
    print("server CPU = the server process's user+system time during the load (100% = one"
          " core); uvicorn runs one process, as `homeo serve` does.")
    print(f"The generator ({generator}) shares the 2 cores with the server: a separate client"
          " machine would see more requests/s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
