"""Runs per second with workers on 1, 2 and 3 "hosts", beside the same workers
on this machine's own network, in one run.

A host is a network namespace with its own veth pair (tests/e2e/support/
netns.py, as the multi-host test makes them): its `homeo worker` reaches
PostgreSQL (the store) and Redis (the queue) through TCP forwarders in the
root namespace, as another machine would over the network. The baseline,
`root`, is the same number of `homeo worker` processes on loopback.

Each measurement: a fresh PostgreSQL schema and Redis key prefix; N runs of a
scripted one-step agent submitted first; then the workers start, and the
clock runs from the moment every worker has sent its first heartbeat to the
moment the last run succeeded. Runs done before every worker was up are left
out of the rate. Needs root (namespaces), PostgreSQL and Redis.

    .venv/bin/python bench/hosts.py                          # 300 runs, 1-3 hosts, median of 3
    .venv/bin/python bench/hosts.py --runs 600 --hosts 1,2 --slots 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    POSTGRES_URL,
    REDIS_URL,
    machine,
    postgres_problem,
    postgres_schema,
    redis_prefix,
    redis_problem,
    table,
)

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests" / "e2e" / "support"))
from netns import Hosts, NetnsUnavailable, check_netns, via  # noqa: E402

AGENT = "bench-echo"
HOMEO = Path(sys.executable).parent / "homeo"
DEADLINE_SECONDS = 600.0
PG_PORT, REDIS_PORT = 5432, 6379


def echo(messages, tools):  # noqa: ANN001, ANN201 (a scripted model function)
    return "echo: " + next(m.content for m in messages if m.role == "user")


def _env(folder: Path, name: str, store_url: str, queue_url: str, slots: int
         ) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("HOMEO_")}
    return {**inherited,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH),
                                                        os.environ.get("PYTHONPATH")])),
            "HOMEO_DATA_DIR": str(folder / f"data-{name}"),
            "HOMEO_DATABASE_URL": store_url, "HOMEO_QUEUE_URL": queue_url,
            "HOMEO_AGENTS_DIR": str(folder / "agents"), "HOMEO_WORKERS": str(slots),
            "HOMEO_POLL_SECONDS": "0.05", "HOMEO_WORKER_HEARTBEAT_SECONDS": "0.5",
            "HOMEO_LOG_LEVEL": "warning"}


def measure(where: str, count: int, runs: int, slots: int, folder: Path, admin_url: str,
            redis_url: str) -> float:
    """Runs/s of `count` workers, on hosts (`where` = "hosts") or on loopback."""
    from homeo.config import Settings
    from homeo.engine.submit import submit_run
    from homeo.runtime import Runtime
    from homeo.store.models import NewRun

    with postgres_schema(admin_url) as store_url, redis_prefix(redis_url) as queue_url:
        runtime = Runtime.open(Settings(data_dir=folder / "data", database_url=store_url,
                                        queue_url=queue_url, agents_dir=folder / "agents"))
        hosts = None
        workers: list[subprocess.Popen[bytes]] = []
        try:
            runtime.publish_agents()
            for n in range(runs):
                submit_run(runtime.backends, NewRun(tenant_id="default", agent=AGENT,
                                                    input=f"input {n}"))
            store = runtime.backends.store
            if where == "hosts":
                hosts = Hosts([f"h{n}" for n in range(count)],
                              {PG_PORT: PG_PORT, REDIS_PORT: REDIS_PORT})
                for host in hosts.hosts.values():
                    workers.append(host.popen(
                        [str(HOMEO), "worker"],
                        env=_env(folder, host.name, via(store_url, host.gateway),
                                 via(queue_url, host.gateway), slots),
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            else:
                for n in range(count):
                    workers.append(subprocess.Popen(
                        [str(HOMEO), "worker"],
                        env=_env(folder, f"root{n}", store_url, queue_url, slots),
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + DEADLINE_SECONDS
            while len(store.list_workers()) < count:
                if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                    raise RuntimeError(f"{where}: the workers did not all start")
                time.sleep(0.02)
            began, done_before = time.perf_counter(), store.count_runs("default").get(
                "succeeded", 0)
            while (done := store.count_runs("default").get("succeeded", 0)) < runs:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{where}: only {done} of {runs} runs succeeded")
                time.sleep(0.02)
            elapsed = time.perf_counter() - began
            if runs - done_before < runs // 2:
                raise RuntimeError(f"{where}: {done_before} runs ended before every worker"
                                   " was up; submit more (--runs)")
            return (runs - done_before) / elapsed
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.terminate()
            for worker in workers:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
            if hosts is not None:
                hosts.close()
            import asyncio

            asyncio.run(runtime.aclose())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--hosts", default="1,2,3", help="host counts to try")
    parser.add_argument("--slots", type=int, default=2, help="HOMEO_WORKERS of each worker")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args(argv)
    for problem in (postgres_problem(args.postgres_url), redis_problem(args.redis_url)):
        if problem:
            print(problem, file=sys.stderr)
            return 2
    try:
        check_netns()
    except NetnsUnavailable as error:
        print(f"cannot make hosts here: {error}", file=sys.stderr)
        return 2
    counts = [int(n) for n in args.hosts.split(",") if n]
    print(f"runs/s of a one-step scripted agent, {args.runs} runs, {args.slots} slots per"
          f" worker, median of {args.repeat}; store PostgreSQL, queue Redis", flush=True)
    print(f"machine: {machine()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="homeo-bench-hosts-") as scratch:
        folder = Path(scratch)
        (folder / "agents").mkdir()
        (folder / "agents" / f"{AGENT}.yaml").write_text(
            f"name: {AGENT}\ndescription: echoes its task\nmodel: scripted:hosts:echo\n"
            "tools: []\nmax_steps: 2\n")
        first = {}
        for count in counts:
            rates: dict[str, list[float]] = {"root": [], "hosts": []}
            for _ in range(args.repeat):
                for where in rates:  # alternate, so drift hits both
                    rates[where].append(measure(where, count, args.runs, args.slots, folder,
                                                args.postgres_url, args.redis_url))
            root, hosts = (statistics.median(rates[w]) for w in ("root", "hosts"))
            first.setdefault("hosts", hosts)
            rows.append([count, f"{root:,.1f}", f"{hosts:,.1f}", f"{hosts / root:.2f}x",
                         f"{hosts / first['hosts']:.2f}x"])
            print(f"  done: {count} worker(s)", file=sys.stderr, flush=True)
    print()
    print(table(["workers", "root runs/s (baseline)", "hosts runs/s", "hosts/root",
                 f"hosts vs {counts[0]} host"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
