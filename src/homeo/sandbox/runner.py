"""`run()`: one command, confined by every layer, with its output and files."""

from __future__ import annotations

import json
import math
import os
import select
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from homeo.sandbox import bwrap, layers
from homeo.sandbox import seccomp as seccomp_filter
from homeo.sandbox.cgroups import RunCgroup
from homeo.sandbox.errors import SandboxError
from homeo.sandbox.limits import Limits

READ_CHUNK = 65536
CANCEL_CHECK_SECONDS = 0.05  # how soon a set `cancel` kills the run
MAX_FILES = 1000  # scratch files returned by default


@dataclass(frozen=True)
class SandboxResult:
    exit_code: int  # the child's; 128+N when signal N ended it (as bwrap reports it)
    stdout: bytes
    stderr: bytes
    duration_seconds: float
    timed_out: bool = False
    cancelled: bool = False  # stopped early by the caller (`cancel` was set)
    oom_killed: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    files: dict[str, bytes] = field(default_factory=dict)  # scratch files, relative paths
    files_truncated: bool = False  # some files were left out (see files_omitted)
    files_omitted: int = 0
    files_omitted_bytes: int = 0  # their names and contents
    layers: tuple[str, ...] = ()

    @property
    def signal(self) -> int | None:
        return self.exit_code - 128 if 128 < self.exit_code < 128 + 65 else None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def _scratch_parent() -> str:
    # tmpfs: what the run writes is memory charged to its own cgroup, not host disk.
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def _write_inputs(scratch: Path, files: Mapping[str, bytes | str]) -> None:
    for name, content in files.items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise SandboxError(f"input file name {name!r} must be a relative path inside scratch")
        target = scratch / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)


@dataclass(frozen=True)
class _Collected:
    files: dict[str, bytes]
    omitted: int  # files left out
    omitted_bytes: int  # their names and contents, in bytes


def _collect(scratch: Path, budget: int, max_files: int) -> _Collected:
    """Regular files the run left in scratch, smallest first: at most
    `max_files`, and at most `budget` bytes of names and contents in all (a
    run can leave 100,000 empty files with long names). Never follows a link:
    the run could point one at a host file."""
    candidates = []
    for folder, _, names in os.walk(scratch, followlinks=False):
        for name in names:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                relative = os.path.relpath(path, scratch)
                candidates.append((info.st_size + len(relative.encode()), relative, path))
    found: dict[str, bytes] = {}
    omitted = omitted_bytes = 0
    for size, relative, path in sorted(candidates):
        if size > budget or len(found) >= max_files:
            omitted, omitted_bytes = omitted + 1, omitted_bytes + size
            continue
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(budget + 1)
        cost = len(data) + len(relative.encode())
        if cost > budget:  # it grew since lstat
            omitted, omitted_bytes = omitted + 1, omitted_bytes + cost
            continue
        budget -= cost
        found[relative] = data
    return _Collected(found, omitted, omitted_bytes)


def _rlimits(prlimit: str, limits: Limits) -> list[str]:
    """`prlimit ... --`: util-linux's prlimit lowers its own limits and execs
    bwrap, so bwrap and everything under it inherit them. (Setting them from
    here on the running child would need CAP_SYS_RESOURCE once bwrap runs as
    another user.) RLIMIT_NPROC is left alone: it counts every process of the
    uid, across runs; pids.max bounds each run instead."""
    cpu_seconds = math.ceil(limits.timeout_seconds * max(limits.cpu, 1.0)) + 1
    return [prlimit, "--core=0", f"--fsize={limits.file_bytes}",
            f"--nofile={limits.open_files}", f"--cpu={cpu_seconds}", "--"]


def _child_pid(status_fd: int, deadline: float) -> int | None:
    """bwrap's child, from the first line of --json-status-fd (None if bwrap failed)."""
    buffer = b""
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([status_fd], [], [], remaining)[0]:
            return None
        chunk = os.read(status_fd, 4096)
        if not chunk:
            return None
        buffer += chunk
    return int(json.loads(buffer.split(b"\n", 1)[0])["child-pid"])


def _start(
    argv_for: Callable[[int, int], list[str]], stdin: BinaryIO, cgroup: RunCgroup | None,
    pass_fds: tuple[int, ...],
) -> tuple[subprocess.Popen[bytes], int]:
    """Start bwrap with its child held at --block-fd, put that child in the
    run's cgroup, then let it go: everything the command starts inherits it.
    (No preexec_fn: tools call this from threads, and a plain spawn is
    faster.) Returns the process and the --json-status-fd read end, which
    stays open until the run ends."""
    status_read, status_write = os.pipe()
    block_read, block_write = os.pipe()
    try:
        process = subprocess.Popen(
            argv_for(status_write, block_read), stdin=stdin, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=(*pass_fds, status_write, block_read),
            env={"PATH": bwrap.PATH}, **bwrap.as_host_user(),
        )
    except BaseException:
        for fd in (status_read, status_write, block_read, block_write):
            os.close(fd)
        raise
    os.close(status_write)
    os.close(block_read)
    child = None
    try:
        child = _child_pid(status_read, time.monotonic() + 10)
        if child is None:
            _, error = process.communicate(timeout=10)
            raise SandboxError(f"bwrap failed: {error.decode(errors='replace').strip()}")
        # Only the child: the outer bwrap just waits for it and starts nothing
        # (and each move between v1 groups can cost milliseconds).
        if cgroup is not None:
            cgroup.add(child)
        os.write(block_write, b"go")
    except BaseException:
        if child is not None:  # held at --block-fd it may not die with bwrap yet
            os.kill(child, signal.SIGKILL)
        process.kill()
        process.wait()
        os.close(status_read)
        raise
    finally:
        os.close(block_write)
    return process, status_read


class _Capture:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if len(chunk) > room:
            self.truncated = True
        self.data += chunk[: max(room, 0)]


def run(
    command: Sequence[str],
    limits: Limits | None = None,
    *,
    files: Mapping[str, bytes | str] | None = None,
    stdin: bytes | None = None,
    allow_without: Iterable[str] = (),
    max_files: int = MAX_FILES,
    files_budget: int | None = None,
    cancel: threading.Event | None = None,
) -> SandboxResult:
    """Run `command` in the sandbox and wait for it (at most the timeout, or
    until `cancel` is set: then the whole process tree is killed at once).

    Scratch files come back smallest first, at most `max_files` of them and
    `files_budget` bytes of names and contents (default: `limits.file_bytes`);
    the rest are counted in `files_omitted`.

    Raises SandboxUnavailable when a layer is missing and not in
    `allow_without`; a command that fails is a result, not an error."""
    if not command:
        raise SandboxError("no command to run")
    limits = limits or Limits()
    active = layers.require(frozenset(allow_without))
    # Named for the process that made it, as its cgroup is: whose it is shows.
    workdir = Path(tempfile.mkdtemp(prefix=f"homeo-sandbox-{os.getpid()}-",
                                    dir=_scratch_parent()))
    cgroup: RunCgroup | None = None
    seccomp_fd: int | None = None
    try:
        scratch, etc = workdir / "scratch", workdir / "etc"
        scratch.mkdir()
        bwrap.write_sandbox_etc(etc)
        _write_inputs(scratch, files or {})
        stdin_file = workdir / "stdin"
        stdin_file.write_bytes(stdin or b"")
        bwrap.hand_over(workdir)
        if active.seccomp:
            seccomp_fd = seccomp_filter.filter_fd()
        if active.controllers:
            cgroup = RunCgroup.create(limits, active.controllers)

        def argv_for(status_fd: int, block_fd: int) -> list[str]:
            return _rlimits(active.prlimit, limits) + bwrap.argv(
                active.bwrap, command, scratch=scratch, etc=etc, seccomp_fd=seccomp_fd,
                status_fd=status_fd, block_fd=block_fd)

        started = time.monotonic()
        with stdin_file.open("rb") as stdin_handle:
            process, status_fd = _start(argv_for, stdin_handle, cgroup,
                                        () if seccomp_fd is None else (seccomp_fd,))
        if seccomp_fd is not None:
            os.close(seccomp_fd)
            seccomp_fd = None
        try:
            out, err, timed_out, cancelled = _communicate(
                process, limits, started + limits.timeout_seconds, cancel)
        finally:
            os.close(status_fd)
        if cgroup is not None:  # nothing of the run outlives it: background processes too
            cgroup.kill_all()
        duration = time.monotonic() - started
        collected = _collect(scratch, limits.file_bytes if files_budget is None
                             else files_budget, max_files)
        return SandboxResult(
            exit_code=process.returncode if process.returncode >= 0 else 128 - process.returncode,
            stdout=bytes(out.data), stderr=bytes(err.data), duration_seconds=duration,
            timed_out=timed_out, cancelled=cancelled, oom_killed=cgroup.oom_killed() if cgroup else False,
            stdout_truncated=out.truncated, stderr_truncated=err.truncated,
            files=collected.files, files_truncated=collected.omitted > 0,
            files_omitted=collected.omitted, files_omitted_bytes=collected.omitted_bytes,
            layers=active.names,
        )
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
        if cgroup is not None:
            cgroup.kill_all()
            cgroup.remove()
        shutil.rmtree(workdir, ignore_errors=True)


def _communicate(
    process: subprocess.Popen[bytes], limits: Limits, deadline: float,
    cancel: threading.Event | None = None,
) -> tuple[_Capture, _Capture, bool, bool]:
    """Read both pipes until they close and the process ends, keeping at most
    the caps (the rest is read and dropped so the child never blocks); kill
    the run at the deadline, or as soon as `cancel` is set. Returns the
    captures and whether the run timed out or was cancelled."""
    assert process.stdout is not None and process.stderr is not None
    captures = {process.stdout.fileno(): _Capture(limits.stdout_bytes),
                process.stderr.fileno(): _Capture(limits.stderr_bytes)}
    timed_out = cancelled = False
    with selectors.DefaultSelector() as selector:
        for fd in captures:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                process.kill()  # bwrap's children die with it (--die-with-parent)
                break
            if cancel is not None:
                if cancel.is_set():
                    cancelled = True
                    process.kill()
                    break
                remaining = min(remaining, CANCEL_CHECK_SECONDS)
            if not selector.get_map():
                try:
                    process.wait(timeout=remaining)
                    break
                except subprocess.TimeoutExpired:
                    continue
            for key, _ in selector.select(timeout=remaining):
                try:
                    chunk = os.read(key.fd, READ_CHUNK)
                except BlockingIOError:
                    continue
                if chunk:
                    captures[key.fd].add(chunk)
                else:
                    selector.unregister(key.fd)
    process.wait()
    process.stdout.close()
    process.stderr.close()
    out, err = captures.values()
    return out, err, timed_out, cancelled
