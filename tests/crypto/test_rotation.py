"""Key rotation on SQLite and PostgreSQL: every data key re-wrapped by the
new KEK, the data untouched and readable, the old KEK dropped and no longer
needed; and a rotation killed halfway (SIGKILL) loses nothing: the file still
holds every KEK in use, and rotating again finishes the job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from homeo.backends import open_backends
from homeo.crypto import keyfile
from homeo.crypto.errors import KeyUnavailable
from homeo.crypto.rotation import rotate
from homeo.crypto.tenants import open_cipher
from homeo.store.models import NewRun

SRC = Path(__file__).resolve().parents[2] / "src"
TENANTS = [f"tenant{i}" for i in range(5)]


def seed(url: str, key_file: Path) -> dict[str, str]:
    """One sealed run per tenant; returns tenant -> run id."""
    backends = open_backends(url)
    try:
        cipher = open_cipher(key_file, backends.store)
        assert cipher is not None
        runs = {}
        for tenant in TENANTS:
            cipher.set_sensitive(tenant, True)
            run, _ = backends.store.create_run(NewRun(tenant_id=tenant, agent="a",
                                                      input=f"secret of {tenant}"))
            runs[tenant] = run.id
        return runs
    finally:
        backends.close()


def read_all(url: str, key_file: Path, runs: dict[str, str]) -> dict[str, str]:
    """Every run's input, read by a fresh process-like cipher from `key_file`."""
    backends = open_backends(url)
    try:
        open_cipher(key_file, backends.store)
        return {tenant: backends.store.get_run(tenant, run_id).input  # type: ignore[union-attr]
                for tenant, run_id in runs.items()}
    finally:
        backends.close()


def expected(runs: dict[str, str]) -> dict[str, str]:
    return {tenant: f"secret of {tenant}" for tenant in runs}


def test_rotation_rewraps_every_data_key_and_retires_the_old_kek(
        backend_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "k.keys"
    old = keyfile.new_key_file(key_file)
    runs = seed(backend_url, key_file)
    before = tmp_path / "before.keys"
    shutil.copy(key_file, before)
    backends = open_backends(backend_url)
    try:
        stored_before = {t: backends.store.get_data_key(
            backends.store.tenant_encryption(t).data_key_id) for t in TENANTS}  # type: ignore
        running = open_cipher(key_file, backends.store)  # a server up across the rotation
        assert running is not None
        result = rotate(backends.store, key_file, batch=2)  # several batches
        assert result.rewrapped == len(TENANTS)
        assert result.dropped == [old.current]
        assert backends.store.data_keys_per_kek() == {result.new_kek: len(TENANTS)}
        for tenant, record in stored_before.items():
            after = backends.store.get_data_key(record.id)  # type: ignore[union-attr]
            assert after.kek_id == result.new_kek and after.wrapped != record.wrapped
        # The running server reads the new file when it meets the new KEK.
        running._data_keys.clear()
        assert running.data_key(TENANTS[0], stored_before[TENANTS[0]].id)  # type: ignore
    finally:
        backends.close()
    assert list(keyfile.load(key_file).keys) == [result.new_kek]
    assert read_all(backend_url, key_file, runs) == expected(runs)
    with pytest.raises(KeyUnavailable, match=result.new_kek):  # the old file: no longer enough
        read_all(backend_url, before, runs)


CRASHING_ROTATION = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from homeo.backends import open_backends
    from homeo.crypto.rotation import rotate

    def die_after(count):
        if count == 2:  # two data keys re-wrapped, three not: SIGKILL, no cleanup
            os.kill(os.getpid(), signal.SIGKILL)

    rotate(open_backends(sys.argv[1]).store, Path(sys.argv[2]), batch=1, after_rewrap=die_after)
""")


def test_a_rotation_killed_halfway_loses_nothing_and_the_next_one_finishes(
        backend_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "k.keys"
    old = keyfile.new_key_file(key_file)
    runs = seed(backend_url, key_file)
    killed = subprocess.run(
        [sys.executable, "-c", CRASHING_ROTATION, backend_url, str(key_file)],
        env={**os.environ, "PYTHONPATH": str(SRC)}, capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    halfway = keyfile.load(key_file)
    assert old.current in halfway.keys and halfway.current != old.current
    backends = open_backends(backend_url)
    try:
        assert backends.store.data_keys_per_kek() == {halfway.current: 2, old.current: 3}
    finally:
        backends.close()
    assert read_all(backend_url, key_file, runs) == expected(runs)  # nothing lost meanwhile

    backends = open_backends(backend_url)
    try:
        again = rotate(backends.store, key_file)
        assert again.rewrapped == len(TENANTS)
        assert sorted(again.dropped) == sorted([old.current, halfway.current])
        assert backends.store.data_keys_per_kek() == {again.new_kek: len(TENANTS)}
    finally:
        backends.close()
    assert list(keyfile.load(key_file).keys) == [again.new_kek]
    assert read_all(backend_url, key_file, runs) == expected(runs)


def test_one_rotation_at_a_time(backend_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "k.keys"
    keyfile.new_key_file(key_file)
    seed(backend_url, key_file)
    backends = open_backends(backend_url)
    inner: list[str] = []

    def nested(count: int) -> None:
        if not inner:
            try:
                rotate(backends.store, key_file)
            except Exception as error:
                inner.append(str(error))

    try:
        rotate(backends.store, key_file, after_rewrap=nested)
    finally:
        backends.close()
    assert inner and "another `homeo crypto rotate`" in inner[0]
