from __future__ import annotations

import pytest

from homeo.sandbox import Limits, SandboxUnavailable, run
from homeo.sandbox.layers import Layer, detect, parse_allow_without, require

ALL_OK = [Layer(name, True, "") for name in (
    "bubblewrap", "userns", "rlimits", "seccomp", "cgroup-memory", "cgroup-pids", "cgroup-cpu")]


def _with_missing(name: str) -> list[Layer]:
    return [Layer(layer.name, False, "gone", "install it") if layer.name == name else layer
            for layer in ALL_OK]


def test_every_layer_is_active_on_this_machine() -> None:
    layers = {layer.name: layer for layer in detect()}
    assert all(layer.ok for layer in layers.values()), [x for x in layers.values() if not x.ok]
    assert require().names == tuple(layers)


@pytest.mark.parametrize("missing", ["seccomp", "cgroup-memory", "cgroup-pids", "cgroup-cpu"])
def test_a_missing_layer_refuses_to_run(missing: str) -> None:
    with pytest.raises(SandboxUnavailable) as refused:
        require(frozenset(), _with_missing(missing))
    assert refused.value.layer == missing
    assert "HOMEO_SANDBOX_ALLOW_WITHOUT" in str(refused.value)


def test_the_operator_can_turn_off_seccomp_or_cgroups_but_not_bwrap() -> None:
    active = require(frozenset({"seccomp"}), _with_missing("seccomp"))
    assert not active.seccomp and "seccomp" not in active.names
    active = require(frozenset({"cgroups"}), _with_missing("cgroup-pids"))
    assert active.controllers == ()
    for name in ("bubblewrap", "userns", "rlimits"):
        with pytest.raises(SandboxUnavailable):
            require(frozenset({"seccomp", "cgroups"}), _with_missing(name))
    with pytest.raises(ValueError, match="only"):
        parse_allow_without("seccomp,bubblewrap")
    assert parse_allow_without(" seccomp , cgroups ") == {"seccomp", "cgroups"}


def test_with_layers_turned_off_the_namespaces_still_hold() -> None:
    code = "import os, socket; print(os.getuid()); socket.create_connection(('1.1.1.1', 53), 1)"
    result = run(["python3", "-c", code], Limits(), allow_without={"seccomp", "cgroups"})
    assert result.stdout == b"65534\n"
    assert result.exit_code != 0 and b"Network is unreachable" in result.stderr
    assert result.layers == ("bubblewrap", "userns", "rlimits")
