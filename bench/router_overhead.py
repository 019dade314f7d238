"""Router overhead: a chat completion through homeo's `/v1/chat/completions`
against the same call made straight to the provider, in one run, at a fixed rate.

The provider is a fast OpenAI-compatible server (a bare ASGI app under uvicorn,
answering one fixed completion) in its own process. homeo (`homeo serve
--workers 0`, HOMEO_LOG_LEVEL=warning so no access line is written) serves
one alias whose only deployment is that server, so each homeo call is: check
the API key, parse and validate the OpenAI request, the router (breaker check,
timeout), an aiohttp call to the provider, parse its answer, build the OpenAI
response, record the usage. The key is made with `homeo keys create` in the
scratch data dir; the provider is sent the same header.

The load is open-loop: request i is due at start + i/rate, whoever is free
sends it, and its latency runs from when it was due (so a server that falls
behind is charged for the wait, not hidden by a slower client). The generator
is a small asyncio HTTP/1.1 keep-alive client on uvloop in this process, on the
same 2 cores as both servers: the rate it reaches is stated next to the rate
asked. Direct and homeo are measured alternately, `--rounds` times per rate,
and the medians are shown with the range of the P99s.

    .venv/bin/python bench/router_overhead.py
    .venv/bin/python bench/router_overhead.py --rates 400,1000 --seconds 5 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvloop
from _common import free_port, machine, table

HERE = Path(__file__).resolve()
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_SECONDS = 30.0
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "fast",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
}).encode()
REQUEST = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "ping"}],
                      "max_tokens": 8}).encode()


def serve_upstream(port: int) -> None:
    """The provider: answers every request with ANSWER, as fast as uvicorn allows."""
    import uvicorn

    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(ANSWER)).encode())]

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        more = True
        while more:  # drain the request body
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": ANSWER})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Server:
    """A server subprocess on 127.0.0.1, stopped by its own pid."""

    def __init__(self, command: list[str], port: int, env: dict[str, str], ready: str,
                 key: str) -> None:
        self.port = port
        self.process = subprocess.Popen(command, env={**os.environ, **env},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited: {self.process.stderr.read()[-2000:]!r}")
            try:
                httpx.request("POST" if ready.startswith("/v1/chat") else "GET",
                              f"http://127.0.0.1:{port}{ready}", content=REQUEST,
                              headers={"Content-Type": "application/json",
                                       "Authorization": f"Bearer {key}"},
                              timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{command} did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Result:
    asked: int
    sent: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def load(port: int, path: str, rate: int, seconds: float, connections: int,
               key: str) -> Result:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(REQUEST)}\r\n\r\n"
    ).encode() + REQUEST
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    next_index = 0
    start = time.perf_counter() + 0.05

    async def worker() -> None:
        nonlocal next_index, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while next_index < total:
                index = next_index
                next_index += 1
                due = start + index / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(request)
                status = await _read_response(reader)
                if status == 200:
                    latencies.append((time.perf_counter() - due) * 1000)
                else:
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return Result(total, len(latencies) + errors, errors, elapsed, latencies)


def run_load(port: int, rate: int, seconds: float, connections: int, key: str) -> Result:
    """One open-loop run on a fresh uvloop loop (the cheapest client we have: every
    microsecond it spends is taken from the servers sharing the 2 cores)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(load(port, "/v1/chat/completions", rate, seconds, connections, key))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100,300,1000", help="requests/s to ask for")
    parser.add_argument("--seconds", type=float, default=4.0, help="per rate, target and round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="direct and homeo measured alternately this many times per rate")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0

    print(machine())
    up_port, homeo_port = free_port(), free_port()
    models = {"bench": [{"model": "openai:fast", "base_url": f"http://127.0.0.1:{up_port}/v1"}]}
    env = {"HOMEO_MODELS": json.dumps(models), "HOMEO_LOG_LEVEL": "warning"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="homeo-bench-") as scratch:
        # homeo's /v1 needs an API key; the provider is sent the same header.
        key = subprocess.run(
            [str(VENV_BIN / "homeo"), "keys", "create", "--data-dir", scratch, "--name", "bench"],
            env={**os.environ, **env}, capture_output=True, text=True, check=True,
        ).stdout.strip()
        upstream = Server([sys.executable, str(HERE), "--serve-upstream", str(up_port)], up_port,
                          {}, "/v1/chat/completions", key)
        try:
            homeo = Server(
                [str(VENV_BIN / "homeo"), "serve", "--port", str(homeo_port), "--data-dir",
                 scratch, "--workers", "0"],
                homeo_port, env, "/v1/chat/completions", key,
            )
        except BaseException:
            upstream.stop()
            raise
        try:
            targets = [("direct to the provider (baseline)", up_port),
                       ("through homeo", homeo_port)]
            for _, port in targets:  # warm both up: connections, imports, caches
                run_load(port, 200, 1.0, args.connections, key)
            for rate in (int(r) for r in args.rates.split(",")):
                rounds: dict[str, list[Result]] = {name: [] for name, _ in targets}
                for _ in range(args.rounds):
                    for name, port in targets:
                        rounds[name].append(
                            run_load(port, rate, args.seconds, args.connections, key))
                base_p50 = median([r.percentile(0.5) for r in rounds[targets[0][0]]])
                base_p99 = median([r.percentile(0.99) for r in rounds[targets[0][0]]])
                for name, results in rounds.items():
                    p50s = [r.percentile(0.5) for r in results]
                    p99s = [r.percentile(0.99) for r in results]
                    reached = [r.sent / r.seconds for r in results]
                    added = "" if name == targets[0][0] else (
                        f"+{median(p50s) - base_p50:.2f} / +{median(p99s) - base_p99:.2f}")
                    rows.append([
                        f"{rate:,}", name, f"{min(reached):,.0f}-{max(reached):,.0f}",
                        sum(r.errors for r in results), f"{median(p50s):.2f}",
                        f"{median(p99s):.2f}", f"{min(p99s):.2f}-{max(p99s):.2f}", added,
                    ])
        finally:
            homeo.stop()
            upstream.stop()
    print(f"POST /v1/chat/completions, {args.rounds} rounds of {args.seconds:g} s per rate and"
          f" target (direct and homeo alternately), {args.connections} keep-alive connections,"
          " latency from when each request was due; medians over the rounds\n")
    print(table(["asked req/s", "target", "reached req/s", "errors", "P50 ms", "P99 ms",
                 "P99 range ms", "added P50 / P99 ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
