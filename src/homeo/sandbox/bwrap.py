"""The bubblewrap command line that confines one run.

The child gets new user, PID, network, IPC, UTS, mount and cgroup
namespaces; it is uid/gid 65534 inside its user namespace and, when homeo is
root, bwrap itself runs as 65534 on the host (a root-run bwrap would leave
the child host root); it cannot create further user namespaces; it has no
capabilities; it dies with its parent and has its own session (no terminal
to push keystrokes into). Its file system is built from nothing: /usr and
(when the sandbox user may read it) the Python homeo runs on, read-only; a
handful of /etc files, read-only (the rest of /etc, /home, /root, the host's
/tmp and the data directory are simply not there); a fresh /proc and a
minimal /dev; a private tmpfs at /tmp; and one writable folder, /scratch.
The root itself is read-only.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SANDBOX_UID = 65534
SANDBOX_GID = 65534
SCRATCH = "/scratch"
PATH = "/usr/local/bin:/usr/bin:/bin"
# Top-level links or folders the dynamic loader and #! lines expect.
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Host /etc files that hold nothing secret and that programs read at start.
HOST_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime")
# /etc files written for the sandbox instead of taken from the host.
SANDBOX_ETC = {
    "passwd": f"nobody:x:{SANDBOX_UID}:{SANDBOX_GID}:nobody:{SCRATCH}:/usr/sbin/nologin\n",
    "group": f"nogroup:x:{SANDBOX_GID}:\n",
    "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
    "hostname": "sandbox\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
}
ENVIRONMENT = {
    "PATH": PATH,
    "HOME": SCRATCH,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def host_user() -> int | None:
    """The host uid bwrap runs as: when homeo is root, the sandbox's own uid,
    so that its processes are `nobody` on the host too (as root they would
    still own every root-owned file they can see); otherwise homeo's user."""
    return SANDBOX_UID if os.geteuid() == 0 else None


def as_host_user() -> dict[str, Any]:
    """subprocess.Popen arguments that start bwrap as `host_user()`."""
    uid = host_user()
    return {} if uid is None else {"user": uid, "group": SANDBOX_GID, "extra_groups": []}


def hand_over(workdir: Path) -> None:
    """Give the run's folder to the host user bwrap runs as."""
    uid = host_user()
    if uid is None:
        return
    for folder, folders, names in os.walk(workdir):
        for name in [*folders, *names]:
            os.lchown(os.path.join(folder, name), uid, SANDBOX_GID)
    os.chown(workdir, uid, SANDBOX_GID)


def _reachable(path: str) -> bool:
    """Whether any user may read `path` (bwrap opens binds as the host user)."""
    if host_user() is None:
        return os.access(path, os.R_OK)
    folders = [str(parent) for parent in Path(path).parents]
    return all(os.stat(f).st_mode & stat.S_IXOTH for f in folders) and bool(
        os.stat(path).st_mode & stat.S_IROTH)


def _python_prefix() -> str | None:
    """The Python installation homeo runs on, when it lives outside /usr and
    the sandbox can be given it."""
    prefix = os.path.realpath(sys.base_prefix)
    if prefix == "/usr" or prefix.startswith("/usr/") or not _reachable(prefix):
        return None
    return prefix


def python_executable() -> str:
    """The interpreter sandboxed Python runs on: the one homeo runs on (its
    base installation; the venv with homeo's packages is not visible), or the
    system python3 when that installation sits somewhere the sandbox user
    cannot read (such as /root)."""
    base = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    if base.startswith("/usr/") or (_python_prefix() and base.startswith(prefix + "/")):
        return base
    return shutil.which("python3", path=PATH) or base


def write_sandbox_etc(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in SANDBOX_ETC.items():
        (folder / name).write_text(text)


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in HOST_ETC:
        if os.path.exists(f"/etc/{name}"):
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    if prefix := _python_prefix():
        args += ["--ro-bind", prefix, prefix]
    return args


def argv(
    bwrap: str,
    command: Sequence[str],
    *,
    scratch: Path,
    etc: Path,
    seccomp_fd: int | None,
    status_fd: int | None = None,
    block_fd: int | None = None,
) -> list[str]:
    """The full argv: bwrap, its options, then `command`. With `status_fd`
    bwrap reports its child's pid there; with `block_fd` that child waits,
    before starting anything, until a byte arrives on it."""
    args = [
        bwrap,
        "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
        "--unshare-uts", "--unshare-cgroup",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
        "--disable-userns",
        "--cap-drop", "ALL",
        "--die-with-parent",
        "--new-session",
        "--hostname", "sandbox",
        "--clearenv",
        *_system_binds(),
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",
        "--bind", str(scratch), SCRATCH,
        "--chdir", SCRATCH,
    ]
    for name in SANDBOX_ETC:
        args += ["--ro-bind", str(etc / name), f"/etc/{name}"]
    for key, value in ENVIRONMENT.items():
        args += ["--setenv", key, value]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    if status_fd is not None:
        args += ["--json-status-fd", str(status_fd)]
    if block_fd is not None:
        args += ["--block-fd", str(block_fd)]
    # The root bwrap builds is a tmpfs: make it read-only once everything is mounted.
    return [*args, "--remount-ro", "/", "--", *command]
