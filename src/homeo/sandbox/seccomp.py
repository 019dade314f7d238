"""The seccomp filter: system calls a sandboxed program never needs.

Everything else is allowed; these answer EPERM (so programs see a plain
permission error and carry on), except `clone3`, which answers ENOSYS so that
the C library falls back to `clone`, whose flags the filter can inspect (the
flags of clone3 sit in memory that seccomp cannot read). Calls from other
architectures (x86 `int 0x80` on x86-64) kill the process: libseccomp's
default for a foreign architecture.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile
from typing import Any

from homeo.sandbox.errors import SandboxUnavailable

DENIED = (
    # debugging other processes, reading their memory
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    # file systems and the root
    "mount", "umount", "umount2", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "pivot_root", "chroot", "swapon", "swapoff", "quotactl",
    "name_to_handle_at", "open_by_handle_at",
    # the kernel itself
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "acct", "syslog", "iopl", "ioperm", "lookup_dcookie", "uselib", "nfsservctl",
    "vhangup", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname",
    # keyrings, bpf, perf, io_uring, userfaultfd: large attack surfaces
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd",
    "fanotify_init",
    # new namespaces
    "unshare", "setns",
)
# clone() flags that create namespaces; clone() itself stays allowed for threads and fork.
NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
TIOCSTI = 0x5412  # push characters into the terminal's input: a classic escape


def _import() -> Any:
    try:
        import pyseccomp
    except (ImportError, OSError) as error:  # the module, or libseccomp.so.2, is missing
        raise SandboxUnavailable(
            "seccomp", str(error), "pip install pyseccomp and apt-get install libseccomp2"
        ) from None
    return pyseccomp


@functools.cache
def filter_bpf() -> bytes:
    """The compiled filter, as the BPF program bwrap's `--seccomp FD` reads."""
    sc = _import()
    rules = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            rules.add_rule(eperm, name)
        except (ValueError, OSError):  # not a system call on this architecture
            continue
    for flag in NAMESPACE_FLAGS:
        rules.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    rules.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as handle:
        rules.export_bpf(handle)
        handle.seek(0)
        return handle.read()


def filter_fd() -> int:
    """A pipe's read end holding the filter, for `--seccomp FD`; the caller closes it."""
    program = filter_bpf()
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, program)  # a few hundred bytes: always fits the pipe buffer
    finally:
        os.close(write_end)
    return read_end
