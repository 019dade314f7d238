"""Which protection layers work on this machine, and the decision to run.

`bubblewrap`, `userns` and `rlimits` are the sandbox itself and can never be
turned off.
`seccomp` and `cgroups` can, but only by the operator naming them in
HOMEO_SANDBOX_ALLOW_WITHOUT; a missing layer is otherwise a refusal, never a
silent run with less confinement.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from homeo.sandbox import bwrap, cgroups, seccomp
from homeo.sandbox.errors import SandboxUnavailable

OPTIONAL = {"seccomp": ("seccomp",), "cgroups": tuple(f"cgroup-{c}" for c in cgroups.CONTROLLERS)}


@dataclass(frozen=True)
class Layer:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Active:
    """What a run will use."""

    bwrap: str
    prlimit: str
    seccomp: bool
    controllers: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        names = ["bubblewrap", "userns", "rlimits"]
        if self.seccomp:
            names.append("seccomp")
        return (*names, *(f"cgroup-{c}" for c in self.controllers))


def _check_userns(path: str) -> Layer:
    with tempfile.TemporaryDirectory() as folder:
        scratch, etc = Path(folder, "scratch"), Path(folder, "etc")
        scratch.mkdir()
        bwrap.write_sandbox_etc(etc)
        bwrap.hand_over(Path(folder))
        command = bwrap.argv(path, ["/usr/bin/id", "-u"], scratch=scratch, etc=etc,
                             seccomp_fd=None)
        try:  # as the runs will: as host user 65534 when homeo is root
            done = subprocess.run(command, capture_output=True, text=True, timeout=10,
                                  **bwrap.as_host_user())
        except (OSError, subprocess.TimeoutExpired) as error:
            return Layer("userns", False, str(error), "check that bwrap runs")
    if done.returncode != 0 or done.stdout.strip() != str(bwrap.SANDBOX_UID):
        return Layer("userns", False, (done.stderr or done.stdout).strip()[:200],
                     "enable user namespaces: sysctl -w user.max_user_namespaces=15000 "
                     "(and kernel.unprivileged_userns_clone=1 where it exists)")
    host = "uid 65534 on the host too" if bwrap.host_user() else "your user on the host"
    return Layer("userns", True, f"child is uid {bwrap.SANDBOX_UID} in its namespaces, {host}")


def detect() -> list[Layer]:
    """Probe every layer (starts bwrap once, creates and removes a cgroup)."""
    layers = []
    path = bwrap.find_bwrap()
    if path is None:
        layers.append(Layer("bubblewrap", False, "bwrap not on PATH",
                            "apt-get install bubblewrap (scripts/setup does it as root)"))
        layers.append(Layer("userns", False, "needs bubblewrap", "install bubblewrap first"))
    else:
        layers.append(Layer("bubblewrap", True, path))
        layers.append(_check_userns(path))
    prlimit = shutil.which("prlimit")
    layers.append(Layer("rlimits", True, prlimit) if prlimit else
                  Layer("rlimits", False, "prlimit not on PATH", "apt-get install util-linux"))
    try:
        size = len(seccomp.filter_bpf())
        layers.append(Layer("seccomp", True, f"filter of {size // 8} BPF instructions"))
    except SandboxUnavailable as error:
        layers.append(Layer("seccomp", False, str(error.args[0]).split("; fix")[0], error.fix))
    except OSError as error:
        layers.append(Layer("seccomp", False, str(error), "apt-get install libseccomp2"))
    for controller, why in cgroups.available().items():
        if why:
            layers.append(Layer(f"cgroup-{controller}", False, why,
                                "run homeo as root on a host with the cgroup v1 "
                                f"{controller} controller mounted at /sys/fs/cgroup/{controller}"))
        else:
            layers.append(Layer(f"cgroup-{controller}", True, "a group per run, limit enforced"))
    return layers


@functools.cache
def _detected() -> tuple[Layer, ...]:
    return tuple(detect())


def parse_allow_without(value: str) -> frozenset[str]:
    names = frozenset(part.strip() for part in value.split(",") if part.strip())
    unknown = names - set(OPTIONAL)
    if unknown:
        raise ValueError(f"unknown sandbox layer(s) {sorted(unknown)}; only "
                         f"{sorted(OPTIONAL)} can be turned off")
    return names


def require(
    allow_without: frozenset[str] = frozenset(), detected: Sequence[Layer] | None = None
) -> Active:
    """The layers a run will use; SandboxUnavailable when one is missing and
    not explicitly allowed off. Probes once per process unless `detected` is given."""
    by_name = {layer.name: layer for layer in (_detected() if detected is None else detected)}
    for name in ("bubblewrap", "userns", "rlimits"):
        if not by_name[name].ok:
            raise SandboxUnavailable(name, by_name[name].detail, by_name[name].fix)
    use_seccomp = "seccomp" not in allow_without
    if use_seccomp and not by_name["seccomp"].ok:
        raise SandboxUnavailable("seccomp", by_name["seccomp"].detail,
                                 by_name["seccomp"].fix + ", or set "
                                 "HOMEO_SANDBOX_ALLOW_WITHOUT=seccomp to run without it")
    controllers: tuple[str, ...] = ()
    if "cgroups" not in allow_without:
        for controller in cgroups.CONTROLLERS:
            layer = by_name[f"cgroup-{controller}"]
            if not layer.ok:
                raise SandboxUnavailable(layer.name, layer.detail, layer.fix + ", or set "
                                         "HOMEO_SANDBOX_ALLOW_WITHOUT=cgroups to run without them")
        controllers = cgroups.CONTROLLERS
    # the detail of an available bubblewrap or rlimits layer is the program's path
    return Active(bwrap=by_name["bubblewrap"].detail, prlimit=by_name["rlimits"].detail,
                  seccomp=use_seccomp, controllers=controllers)
