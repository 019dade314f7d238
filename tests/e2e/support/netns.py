""""Hosts" on one machine for the multi-host tests: network namespaces, each
joined to the root namespace by its own veth pair on a private /30, and TCP
forwarders in the root namespace that carry a host's traffic to the servers
listening on loopback only (PostgreSQL, Redis).

Nothing here touches the machine's own interfaces or servers: the test makes
its namespaces, veth pairs and forwarders, and `Hosts.close` removes them all
(the processes it started inside them first).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


def via(url: str, address: str) -> str:
    """`url` with its host replaced by `address` (its port and the rest kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{address}:{parts.port}" if userinfo else f"{address}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class NetnsUnavailable(Exception):
    """This machine (or this user) cannot make network namespaces."""


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def check_netns() -> None:
    """Raise NetnsUnavailable saying why when namespaces cannot be made here."""
    if os.geteuid() != 0:
        raise NetnsUnavailable(
            "making network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    probe = f"homeo-probe-{secrets.token_hex(3)}"
    try:
        ip("netns", "add", probe)
    except FileNotFoundError:
        raise NetnsUnavailable("the `ip` command (iproute2) is not installed") from None
    except RuntimeError as error:
        raise NetnsUnavailable(f"cannot make a network namespace: {error}") from None
    ip("netns", "del", probe)


def free_subnet(rng: random.Random) -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no address or route on this machine overlaps."""
    taken = [ipaddress.ip_interface(word).network
             for line in ip("-4", "-o", "addr", "show").splitlines()
             for word in line.split() if "/" in word and word[0].isdigit()]
    for line in ip("-4", "route", "show", "table", "all").splitlines():
        first = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            if first[0:1].isdigit():
                taken.append(ipaddress.ip_network(first, strict=False))
    for _ in range(200):
        candidate = ipaddress.ip_network(f"10.{rng.randint(200, 254)}.{rng.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(network) for network in taken):
            return candidate
    raise RuntimeError("no free 10.x.y.0/24 subnet found for the test's hosts")


@dataclass
class Host:
    name: str
    netns: str
    link: str  # the root namespace's end of the veth pair
    gateway: str  # the root end's address: where the forwarders listen
    address: str  # the host's own address
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(self, args: list[str], **kwargs) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(["ip", "netns", "exec", self.netns, *args], **kwargs)
        self.processes.append(process)
        return process

    def pids(self) -> list[int]:
        """Every process in this host's namespace."""
        return [int(pid) for pid in ip("netns", "pids", self.netns).split()]

    def kill(self) -> list[int]:
        """SIGKILL every process in the namespace at once: the host dies."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        return pids

    def cut(self) -> None:
        ip("link", "set", self.link, "down")

    def restore(self) -> None:
        ip("link", "set", self.link, "up")


class Forwarders:
    """TCP relays in the root namespace, run on an asyncio loop in a thread.

    Each relay listens on (address, port) and connects every client to
    127.0.0.1:target. A paused relay accepts and reads but holds what it read
    until resumed: to the client the server has gone silent."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[asyncio.AbstractServer] = []
        self.gates: dict[tuple[str, int], asyncio.Event] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def add(self, address: str, port: int, target: int) -> None:
        asyncio.run_coroutine_threadsafe(self._listen(address, port, target), self.loop).result(30)

    async def _listen(self, address: str, port: int, target: int) -> None:
        gate = asyncio.Event()
        gate.set()
        self.gates[(address, port)] = gate

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # One side going away (an error here) closes the other.
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(65536):
                    await gate.wait()
                    writer.write(data)
                    await writer.drain()
            writer.close()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1",
                                                                                 target)
            except OSError:
                writer.close()
                return
            for pair in ((reader, upstream_writer), (upstream_reader, writer)):
                task = asyncio.create_task(relay(*pair))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

        self.servers.append(await asyncio.start_server(accept, address, port))

    def pause(self, address: str, port: int) -> None:
        self.loop.call_soon_threadsafe(self.gates[(address, port)].clear)

    def resume(self, address: str, port: int) -> None:
        self.loop.call_soon_threadsafe(self.gates[(address, port)].set)

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


class Hosts:
    """Namespaces named homeo-<tag>-<name>, each with a veth pair to the root
    namespace on its own /30 of a free 10.x.y.0/24, and forwarders on each
    pair's root end to the loopback ports in `forward` ({listen port: target})."""

    def __init__(self, names: list[str], forward: dict[int, int],
                 rng: random.Random | None = None) -> None:
        self.tag = secrets.token_hex(2)
        self.hosts: dict[str, Host] = {}
        self.forwarders = Forwarders()
        try:
            subnet = list(free_subnet(rng or random.Random()).hosts())
            for index, name in enumerate(names):
                gateway, address = subnet[4 * index], subnet[4 * index + 1]
                host = Host(name, f"homeo-{self.tag}-{name}", f"hm{self.tag}{index}",
                            str(gateway), str(address))
                ip("netns", "add", host.netns)
                self.hosts[name] = host  # from here on, close() removes it
                ip("link", "add", host.link, "type", "veth", "peer", "name", f"{host.link}p")
                ip("link", "set", f"{host.link}p", "netns", host.netns)
                ip("addr", "add", f"{gateway}/30", "dev", host.link)
                ip("link", "set", host.link, "up")
                ip("-n", host.netns, "link", "set", "lo", "up")
                ip("-n", host.netns, "addr", "add", f"{address}/30", "dev", f"{host.link}p")
                ip("-n", host.netns, "link", "set", f"{host.link}p", "up")
                for port, target in forward.items():
                    self.forwarders.add(host.gateway, port, target)
        except BaseException:
            self.close()
            raise

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def close(self) -> None:
        """Kill what runs in the namespaces, delete them (which deletes their veth
        pairs) and stop the forwarders; whatever state a failed test left."""
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                host.restore()
            with contextlib.suppress(Exception):
                host.kill()
        for host in self.hosts.values():
            deadline = time.monotonic() + 30
            while True:
                try:
                    ip("netns", "del", host.netns)
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            with contextlib.suppress(RuntimeError):  # normally gone with its namespace
                ip("link", "del", host.link)
        self.forwarders.close()
