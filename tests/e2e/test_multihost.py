"""Workers on several "hosts": network namespaces on this machine, each running
`homeo worker` with the store on PostgreSQL and the queue on Redis, reached
over its own veth pair through forwarders in the root namespace (both servers
listen on loopback only). The API (`homeo serve --workers 0`) runs on a host of
its own, and the test submits runs to it over HTTP.

A whole host is killed (every process in its namespace), and a host's link is
cut for longer than a lease and restored. Nothing accepted is lost, no
completed side effect happens twice, the runs resume on the surviving hosts,
and the partitioned worker's late write is refused by the store (LeaseFenced).

The agents and the side-effect files come from tests/e2e/support/crashkit.py;
the namespaces from tests/e2e/support/netns.py. Needs root; under CI=true the
test fails (saying why) when it cannot make namespaces.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from homeo.config import Settings
from homeo.runtime import Runtime

SUPPORT = Path(__file__).parent / "support"
HOMEO = Path(sys.executable).parent / "homeo"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
DEADLINE_SECONDS = 240
LEASE_SECONDS = "2"
API_PORT = 8080
PG_PORT, REDIS_PORT = 5432, 6379

sys.path.insert(0, str(SUPPORT))
from netns import Host, Hosts, NetnsUnavailable, check_netns, via  # noqa: E402

sys.path.remove(str(SUPPORT))


def wait_until(condition, what: str, deadline: float = DEADLINE_SECONDS) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


class Cluster:
    """An API host and worker hosts sharing one PostgreSQL schema and one Redis
    key prefix; the test process reads both directly (over loopback)."""

    def __init__(self, tmp: Path, hosts: Hosts, store_url: str, queue_url: str,
                 sleep: float) -> None:
        self.tmp, self.hosts = tmp, hosts
        self.store_url, self.queue_url = store_url, queue_url
        self.agents = tmp / "agents"
        self.agents.mkdir()
        for name, tool_name in (("writer", "append_line"), ("marker", "mark_line")):
            (self.agents / f"{name}.yaml").write_text(
                f"name: {name}\nmodel: scripted:crashkit:writer_model\n"
                f"tools: [crashkit:{tool_name}]\nmax_steps: 6\ntimeouts: {{step: 60, run: 600}}\n")
        self.plan, self.marks = tmp / "plan", tmp / "marks"
        self.plan.mkdir()
        self.marks.mkdir()
        self.lines, self.executions = tmp / "lines.txt", tmp / "executions.txt"
        self.lines.touch()
        self.executions.touch()
        sys.path.insert(0, str(SUPPORT))  # the runtime loads crashkit's agents
        self.runtime = Runtime.open(Settings(data_dir=tmp / "data", database_url=store_url,
                                             queue_url=queue_url, agents_dir=self.agents))
        self.runtime.publish_agents()
        self.sleep = sleep
        self.logs: dict[int, Path] = {}
        self.api: httpx.Client | None = None

    def env(self, host: Host, **extra: str) -> dict[str, str]:
        """The environment of a homeo process on `host`: its servers through the
        forwarders on its own link."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("HOMEO_")}
        return {
            **inherited,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SUPPORT),
                                                        os.environ.get("PYTHONPATH")])),
            "HOMEO_DATA_DIR": str(self.tmp / f"data-{host.name}"),
            "HOMEO_DATABASE_URL": via(self.store_url, host.gateway),
            "HOMEO_QUEUE_URL": via(self.queue_url, host.gateway),
            "HOMEO_AGENTS_DIR": str(self.agents),
            "HOMEO_LEASE_SECONDS": LEASE_SECONDS,
            "HOMEO_POLL_SECONDS": "0.05",
            "HOMEO_MAX_ATTEMPTS": "5",
            "HOMEO_RETRY_BASE_SECONDS": "0.05",
            "HOMEO_SWEEP_SECONDS": "1",
            "HOMEO_LOG_LEVEL": "warning",
            "CRASHKIT_PLAN": str(self.plan),
            "CRASHKIT_FILE": str(self.lines),
            "CRASHKIT_MARKS": str(self.marks),
            "CRASHKIT_EXECUTIONS": str(self.executions),
            "CRASHKIT_SLEEP": str(self.sleep),
            **extra,
        }

    def start(self, host: Host, args: list[str], **extra: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{host.name}-{len(host.processes)}.log"
        with log.open("wb") as stderr:
            process = host.popen([str(HOMEO), *args], env=self.env(host, **extra),
                                 stdout=subprocess.DEVNULL, stderr=stderr)
        self.logs[process.pid] = log
        return process

    def start_worker(self, host: Host, slots: int) -> subprocess.Popen[bytes]:
        return self.start(host, ["worker"], HOMEO_WORKERS=str(slots))

    def log(self, process: subprocess.Popen[bytes]) -> str:
        return self.logs[process.pid].read_text(errors="replace")

    def start_api(self, host: Host) -> None:
        """`homeo serve --workers 0` on `host`, and a client of it in the root namespace."""
        server = self.start(host, ["serve", "--host", host.address, "--port", str(API_PORT),
                                   "--workers", "0"])
        self.api = httpx.Client(base_url=f"http://{host.address}:{API_PORT}", timeout=30,
                                trust_env=False)

        def healthy() -> bool:
            assert server.poll() is None, f"homeo serve exited: {self.log(server)[-3000:]}"
            try:
                return self.api.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, "the API on its host to answer /healthz", 60)
        (key,) = set(re.findall(r"hk_[0-9a-f]{16}_[A-Za-z0-9_-]+", self.log(server)))
        self.api.headers["authorization"] = f"Bearer {key}"

    def submit(self, agent: str, token: str) -> str:
        response = self.api.post("/v1/runs", json={"agent": agent, "input": token})
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def runs(self, run_ids: dict[str, str]) -> dict[str, dict]:
        """Each token's run as the API shows it."""
        return {token: self.api.get(f"/v1/runs/{run_id}").json()
                for token, run_id in run_ids.items()}

    def all_final(self, run_ids: dict[str, str]) -> bool:
        return all(run["status"] in ("succeeded", "failed", "cancelled")
                   for run in self.runs(run_ids).values())

    def leased_runs(self, pid: int) -> set[str]:
        """The runs whose jobs the worker process `pid` leases (read on Redis)."""
        queue = self.runtime.backends.queue
        client, prefix = queue.storage.client, queue.storage.prefix
        held = set()
        for job_id in client.zrange(prefix + "leases", 0, -1):
            owner = client.hget(f"{prefix}job:{job_id}", "lease_owner") or ""
            job = queue.get("default", job_id) if f":{pid}:" in owner else None
            if job is not None and "run_id" in job.payload:  # not a prune job
                held.add(str(job.payload["run_id"]))
        return held

    def executed_by(self, pid: int) -> list[str]:
        return [line.split()[0] for line in self.executions.read_text().splitlines()
                if line.split()[1] == str(pid)]

    def written(self) -> Counter[str]:
        return Counter(self.lines.read_text().split())

    def check_side_effects(self, run_ids: dict[str, str]) -> dict[str, dict]:
        """Every run final; no line written twice; each succeeded run's three side
        effects done. Returns the runs."""
        runs = self.runs(run_ids)
        written = self.written()
        assert max(written.values(), default=1) == 1, f"a side effect happened twice: {written}"
        marks = {path.name for path in self.marks.iterdir()}
        for token, run in runs.items():
            assert run["status"] in ("succeeded", "failed"), (token, run["status"], run["error"])
            if run["status"] == "failed":
                # Only a non-idempotent tool cut off mid-call may fail a run.
                assert run["agent"] == "writer" and "not marked idempotent" in run["error"], run
            elif run["agent"] == "writer":
                assert [written[f"{token}:{n}"] for n in (1, 2, 3)] == [1, 1, 1], token
                assert run["output"] == f"wrote 3 lines for {token}"
            else:
                assert {f"{token}:{n}" for n in (1, 2, 3)} <= marks, token
        return runs

    def close(self) -> None:
        if self.api is not None:
            self.api.close()
        self.runtime.backends.close()
        sys.path.remove(str(SUPPORT))


@pytest.fixture
def hosts() -> Iterator[callable]:
    """Make namespaces ("hosts") by name; all removed after the test."""
    try:
        check_netns()
    except NetnsUnavailable as error:
        message = f"the multi-host test needs network namespaces: {error}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    made: list[Hosts] = []

    def make(*names: str) -> Hosts:
        made.append(Hosts(list(names), {PG_PORT: PG_PORT, REDIS_PORT: REDIS_PORT}))
        return made[-1]

    yield make
    for network in made:
        network.close()


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[callable]:
    made: list[Cluster] = []

    def make(network: Hosts, sleep: float = 0.0) -> Cluster:
        made.append(Cluster(tmp_path, network, postgres_url, redis_url, sleep))
        return made[-1]

    yield make
    for one in made:
        one.close()


def stop(worker: subprocess.Popen[bytes]) -> int:
    worker.send_signal(signal.SIGTERM)
    return worker.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_killing_a_whole_host_loses_no_run_and_repeats_no_side_effect(hosts, cluster) -> None:
    network = hosts("api", "h1", "h2", "h3")
    homeo = cluster(network, sleep=0.2)  # each side effect takes a while: leases are held
    homeo.start_api(network["api"])
    workers = {name: homeo.start_worker(network[name], slots=2) for name in ("h1", "h2", "h3")}
    run_ids = {f"k{n}": homeo.submit("writer" if n % 2 else "marker", f"k{n}")
               for n in range(18)}
    victim = workers["h1"]

    # Freeze the whole host; if it holds leases, kill every process on it (its
    # leases are then certainly left behind), else let it go on and look again.
    held: set[str] = set()
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not held:
        assert not homeo.all_final(run_ids), "every run ended before h1 held a lease"
        assert time.monotonic() < deadline, "h1 never held a lease"
        pids = network["h1"].pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        if held := homeo.leased_runs(victim.pid):
            killed = network["h1"].kill()
        else:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            time.sleep(0.1)
    assert victim.pid in killed and victim.returncode == -signal.SIGKILL
    assert not network["h1"].pids()

    wait_until(lambda: homeo.all_final(run_ids), "every run to end on the surviving hosts")
    runs = homeo.check_side_effects(run_ids)
    assert set(runs) == set(run_ids)  # every accepted run is there, and final
    assert {run["status"] for run in runs.values() if run["agent"] == "marker"} == {"succeeded"}
    # The runs the dead host held were taken up and ended by the other hosts.
    survivors = {workers["h2"].pid, workers["h3"].pid}
    by_id = {run["id"]: (token, run) for token, run in runs.items()}
    for run_id in held:
        token, run = by_id[run_id]
        finished_by = {pid for pid in survivors if any(
            line.startswith(f"{token}:") for line in homeo.executed_by(pid))}
        assert run["status"] == "failed" or finished_by, (token, run)
    stats = homeo.runtime.backends.queue.stats()
    assert stats["lease_expiries"] >= len(held) and stats["done"] >= len(run_ids)
    assert [stop(workers[name]) for name in ("h2", "h3")] == [0, 0]
    for name in ("h2", "h3"):
        assert "Traceback" not in homeo.log(workers[name]), homeo.log(workers[name])[-3000:]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_a_partitioned_host_is_fenced_and_its_run_resumes_on_another(hosts, cluster) -> None:
    network = hosts("api", "h1", "h2")
    homeo = cluster(network, sleep=0.05)
    homeo.start_api(network["api"])
    workers = {name: homeo.start_worker(network[name], slots=1) for name in ("h1", "h2")}
    pids = {name: worker.pid for name, worker in workers.items()}
    # Whichever host takes the "fence" run holds it inside its second side
    # effect, until the test lets it go.
    holds = {name: homeo.plan / f"fence@hold:2:{pid}" for name, pid in pids.items()}
    for hold in holds.values():
        hold.touch()
    run_ids = {"fence": homeo.submit("marker", "fence")}
    run_ids |= {f"b{n}": homeo.submit("writer" if n % 2 else "marker", f"b{n}")
                for n in range(8)}

    def holder() -> str | None:
        return next((name for name, pid in pids.items()
                     if "fence:2" in homeo.executed_by(pid)), None)

    wait_until(lambda: holder() is not None, "a host to hold the fence run")
    cut = holder()
    (other,) = set(pids) - {cut}
    host = network[cut]
    # Partition the host. Its Redis relay stays silent even after the link is
    # back, until the test has seen the store refuse the late write: the queue
    # can then not tell the worker first that its lease is gone.
    host.cut()
    homeo.hosts.forwarders.pause(host.gateway, REDIS_PORT)
    try:
        # Longer than a lease: the other host claims the run again and redoes
        # the (idempotent) step the partitioned host was in.
        wait_until(lambda: "fence:2" in homeo.executed_by(pids[other]),
                   "the other host to take the run over")
        holds[cut].unlink()  # the partitioned worker's step ends; its write waits
        host.restore()
        wait_until(lambda: "was claimed again" in homeo.log(workers[cut]),
                   "the partitioned worker's late write to be fenced")
    finally:
        host.restore()
        homeo.hosts.forwarders.resume(host.gateway, REDIS_PORT)
    holds[other].unlink()
    wait_until(lambda: homeo.all_final(run_ids), "every run to end")

    runs = homeo.check_side_effects(run_ids)
    fence = runs["fence"]
    assert (fence["status"], fence["output"]) == ("succeeded", "wrote 3 lines for fence")
    tool_steps = [step for step in fence["steps"] if step["kind"] == "tool"]
    assert [step["attempts"] for step in tool_steps] == [1, 2, 1]
    assert homeo.executed_by(pids[cut]).count("fence:2") == 1
    assert homeo.executed_by(pids[other]).count("fence:2") == 1
    log = homeo.log(workers[cut])
    assert "lease lost" in log and "this writer holds claim" in log, log[-3000:]
    assert stop(workers[other]) == 0 and "Traceback" not in homeo.log(workers[other])
    # The partitioned worker came back: alone now, it works a new run.
    assert workers[cut].poll() is None, log[-3000:]
    extra = {"after": homeo.submit("marker", "after")}
    wait_until(lambda: homeo.all_final(extra), "a run submitted after the partition")
    homeo.check_side_effects(extra)
    assert homeo.executed_by(pids[cut]).count("after:1") == 1
    assert stop(workers[cut]) == 0
