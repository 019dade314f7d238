"""TLS cost on `homeo serve`'s transport: handshake time with X25519MLKEM768
against X25519, and request latency over homeo's TLS against plain HTTP.

A server subprocess runs one minimal ASGI app (a 2-byte answer) under uvicorn
three ways, on three ports of 127.0.0.1, as `homeo serve` runs uvicorn:
plain HTTP; homeo.tls (pyOpenSSL memory BIOs inside uvicorn, TLS 1.3,
X25519MLKEM768 preferred); and uvicorn's own TLS on Python's ssl (OpenSSL 3.0:
X25519 at best), the baseline for how homeo terminates TLS. The certificate is
ECDSA P-256, made here.

- handshakes: a pyOpenSSL client opens a TCP connection and completes a TLS
  1.3 handshake, offering X25519MLKEM768 (and getting it if the server can) or
  X25519 only; the median and P99 over `--handshakes` each, and the bytes the
  server sent (the ML-KEM ciphertext makes its first flight larger);
- requests: one keep-alive httpx client (Python's ssl) per port sends
  `--requests` GETs; P50 and P99.

The cases take turns (one handshake or request of each, then again), so load
from other processes falls on all of them alike. Client and server share the
machine's 2 cores, so each figure includes the client's own work.

    .venv/bin/python bench/tls.py
    .venv/bin/python bench/tls.py --handshakes 1000 --requests 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from _common import free_port, machine, table
from OpenSSL import SSL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from homeo.tls import https_protocol, server_context  # noqa: E402
from homeo.tls.probe import client_context, handshake  # noqa: E402

START_DEADLINE_SECONDS = 30.0


async def app(scope, receive, send) -> None:  # noqa: ANN001 (ASGI)
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def serve(cert: Path, key: Path, ports: dict[str, int]) -> None:
    """The server subprocess: the app on each port, until stdin closes."""
    import uvicorn

    configs = {
        "plain": uvicorn.Config(app, port=ports["plain"], log_level="warning"),
        "homeo": uvicorn.Config(app, port=ports["homeo"], log_level="warning",
                                http=https_protocol(server_context(cert, key), 10.0)),
        "uvicorn": uvicorn.Config(app, port=ports["uvicorn"], log_level="warning",
                                  ssl_certfile=str(cert), ssl_keyfile=str(key)),
    }
    servers = [uvicorn.Server(config) for config in configs.values()]

    async def main() -> None:
        tasks = [asyncio.create_task(server.serve()) for server in servers]
        while not all(server.started for server in servers):
            await asyncio.sleep(0.01)
        print("started", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)

    asyncio.run(main())


def one_handshake(port: int, groups: list[str]) -> tuple[float, int, str]:
    """Seconds from connect to a finished handshake, server bytes received, group."""
    began = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    connection = SSL.Connection(client_context(groups), sock)
    connection.set_connect_state()
    handshake(connection, sock, time.monotonic() + START_DEADLINE_SECONDS)
    seconds = time.perf_counter() - began
    group = connection.get_group_name() or ""
    received = received_bytes(sock)
    sock.close()
    return seconds, received, group


def received_bytes(sock: socket.socket) -> int:
    """Bytes the kernel has received on `sock`: TCP_INFO's tcpi_bytes_received, a u64
    at offset 128 of struct tcp_info (Linux 4.1 and later); -1 elsewhere."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("Q", info, 128)[0] if len(info) >= 136 else -1


def percentiles(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {"p50_ms": statistics.median(times) * 1e3,
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3}


def handshakes(cases: dict[str, tuple[int, list[str]]], count: int) -> dict[str, dict]:
    """Each case's handshakes, taken in turn (case 1, 2, 3, 1, 2, 3, ...) so the
    machine's other load falls on all alike."""
    for port, groups in cases.values():  # warm up: imports, first connections
        for _ in range(min(20, count)):
            one_handshake(port, groups)
    results: dict[str, list[tuple[float, int, str]]] = {name: [] for name in cases}
    for _ in range(count):
        for name, (port, groups) in cases.items():
            results[name].append(one_handshake(port, groups))
    return {name: {**percentiles([seconds for seconds, _, _ in rows]),
                   "bytes": int(statistics.median(received for _, received, _ in rows)),
                   "group": rows[-1][2]}
            for name, rows in results.items()}


def requests(cases: dict[str, tuple[str, ssl.SSLContext | bool]], count: int
             ) -> dict[str, dict[str, float]]:
    """GETs on one keep-alive connection per case, in turn as handshakes() does."""
    clients = {name: (httpx.Client(verify=verify), url) for name, (url, verify) in cases.items()}
    times: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for client, url in clients.values():
            for _ in range(min(50, count)):
                client.get(url).raise_for_status()
        for _ in range(count):
            for name, (client, url) in clients.items():
                began = time.perf_counter()
                client.get(url).raise_for_status()
                times[name].append(time.perf_counter() - began)
    finally:
        for client, _ in clients.values():
            client.close()
    return {name: percentiles(rows) for name, rows in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--serve", nargs=3, metavar=("CERT", "KEY", "PORTS_JSON"),
                        help=argparse.SUPPRESS)  # the server subprocess
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]), json.loads(args.serve[2]))
        return

    from tests.support.tlskit import make_pki

    print(machine())
    with tempfile.TemporaryDirectory() as folder:
        pki = make_pki(Path(folder))
        ports = {"plain": free_port(), "homeo": free_port(), "uvicorn": free_port()}
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(pki.cert_file), str(pki.key_file),
             json.dumps(ports)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            started = threading.Timer(START_DEADLINE_SECONDS, server.kill)
            started.start()
            line = server.stdout.readline()
            started.cancel()
            if line.strip() != "started":
                sys.exit("the server subprocess did not start")
            verify = ssl.create_default_context(cafile=pki.ca_file)
            pq = ["X25519MLKEM768", "X25519"]
            shakes = handshakes({
                "homeo.tls, X25519MLKEM768 offered": (ports["homeo"], pq),
                "homeo.tls, X25519 only offered": (ports["homeo"], ["X25519"]),
                "uvicorn's ssl (baseline), X25519MLKEM768 offered": (ports["uvicorn"], pq),
            }, args.handshakes)
            latency = requests({
                "plain HTTP (baseline)": (f"http://127.0.0.1:{ports['plain']}/", True),
                "homeo.tls": (f"https://127.0.0.1:{ports['homeo']}/", verify),
                "uvicorn's ssl": (f"https://127.0.0.1:{ports['uvicorn']}/", verify),
            }, args.requests)
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(START_DEADLINE_SECONDS)
    print(f"\nTLS 1.3 handshakes, new TCP connection each ({args.handshakes} each, in turn):")
    print(table(["server, client offer", "group", "P50 ms", "P99 ms", "server bytes"],
                [(name, r["group"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", r["bytes"])
                 for name, r in shakes.items()]))
    print(f"\nGET / on one keep-alive connection ({args.requests} each, in turn, httpx):")
    plain = latency["plain HTTP (baseline)"]["p50_ms"]
    print(table(["server", "P50 ms", "P99 ms", "P50 vs plain"],
                [(name, f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}",
                  f"{(r['p50_ms'] - plain) * 1e3:+.0f} µs") for name, r in latency.items()]))


if __name__ == "__main__":
    main()
