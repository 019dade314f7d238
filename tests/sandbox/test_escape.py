"""Each attack runs inside the sandbox and must fail; the host is checked after."""

from __future__ import annotations

import os
import secrets
import socket
import textwrap
import threading
import time
from pathlib import Path

from homeo.sandbox import Limits, SandboxResult, run

from .conftest import processes_with


def python(code: str, *args: str, **limits: object) -> SandboxResult:
    return run(["python3", "-c", textwrap.dedent(code), *args], Limits(**limits))


def test_host_secrets_cannot_be_read(tmp_path: Path) -> None:
    data_dir = tmp_path / "homeo-data"
    data_dir.mkdir()
    secret = secrets.token_hex(16)
    (data_dir / "homeo.db").write_text(secret)
    result = python("""
        import sys
        for path in sys.argv[1:]:
            try:
                print(path, "READ", open(path).read())
            except OSError as error:
                print(path, "DENIED", type(error).__name__)
        """, "/etc/shadow", str(data_dir / "homeo.db"), "/root/.bash_history",
        "/proc/1/environ")
    lines = result.stdout.decode().splitlines()
    assert [line.split()[1] for line in lines[:3]] == ["DENIED"] * 3, lines
    assert secret not in result.stdout.decode()
    assert b"HOMEO" not in result.stdout  # /proc/1 is the sandbox's own init, not the host's


def test_the_host_process_table_is_not_visible() -> None:
    result = python("import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    assert max(eval(result.stdout)) < 10  # only the sandbox's few processes


def test_nothing_outside_scratch_can_be_written(tmp_path: Path) -> None:
    host_file = Path("/tmp") / f"homeo-escape-{secrets.token_hex(6)}"
    host_file.write_text("host")
    try:
        result = python("""
            import sys
            for path in sys.argv[1:]:
                try:
                    open(path, "w").write("pwned")
                    print(path, "WROTE")
                except OSError as error:
                    print(path, "DENIED", error.strerror)
            """, "/usr/lib/pwned", "/etc/passwd", "/pwned", str(tmp_path / "pwned"),
            str(host_file))
        lines = result.stdout.decode().splitlines()
        assert all(line.split()[1] == "DENIED" for line in lines[:4]), lines
        # /tmp inside is a private tmpfs: writing there never reaches the host's /tmp.
        assert host_file.read_text() == "host"
        assert not (tmp_path / "pwned").exists()
    finally:
        host_file.unlink()


def test_no_network_not_even_loopback_to_the_host() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(3)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    waiter = threading.Thread(target=accept)
    waiter.start()
    try:
        result = python("""
            import socket, sys
            for host in ("127.0.0.1", "1.1.1.1"):
                try:
                    socket.create_connection((host, int(sys.argv[1])), timeout=2)
                    print(host, "CONNECTED")
                except OSError as error:
                    print(host, "DENIED", error)
            """, str(port))
    finally:
        server.close()
        waiter.join()
    assert b"CONNECTED" not in result.stdout and result.stdout.count(b"DENIED") == 2
    assert accepted == []


def test_a_fork_bomb_is_bounded_and_leaves_nothing() -> None:
    token = f"bomb-{secrets.token_hex(6)}"
    result = python("""
        import os, time
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.1)
        """, token, pids=32, timeout_seconds=3)
    assert result.timed_out
    assert processes_with(token) == []


def test_allocating_4_gb_is_killed() -> None:
    result = python("x = bytearray(4 * 2**30); print('allocated')", memory_bytes="128M")
    assert result.exit_code != 0 and b"allocated" not in result.stdout
    assert result.oom_killed or b"MemoryError" in result.stderr


def test_an_infinite_loop_is_killed_at_the_timeout() -> None:
    token = f"loop-{secrets.token_hex(6)}"
    result = python("while True: pass", token, timeout_seconds=1)
    assert result.timed_out and result.exit_code != 0
    assert processes_with(token) == []


def test_no_background_process_outlives_the_run() -> None:
    token = f"daemon-{secrets.token_hex(6)}"
    result = python("""
        import subprocess, sys
        child = subprocess.Popen(["python3", "-c", "import time; time.sleep(60)", sys.argv[1]],
                                 start_new_session=True, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        print(child.pid)
        """, token)
    assert result.exit_code == 0 and int(result.stdout) > 1
    assert processes_with(token) == []


def test_no_privileges_and_no_way_to_get_them() -> None:
    result = python("""
        import os, subprocess
        print(os.getuid(), os.geteuid(), os.getgid())
        for attempt in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.chroot("/tmp")):
            try:
                attempt()
                print("ESCALATED")
            except OSError as error:
                print("DENIED", error.errno)
        status = dict(line.split(":\\t") for line in open("/proc/self/status").read().splitlines()
                      if ":\\t" in line)
        print(status["CapEff"], status["CapBnd"], status["NoNewPrivs"], status["Seccomp"])
        # a setuid binary does not raise privileges (no_new_privs)
        print(subprocess.run(["/usr/bin/su", "-c", "id -u"], capture_output=True).returncode)
        """)
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "65534 65534 65534"
    # EINVAL for setuid/setgid (uid 0 does not exist in the namespace), EPERM for chroot
    assert [line.split()[0] for line in lines[1:4]] == ["DENIED"] * 3, lines
    assert lines[4] == "0000000000000000 0000000000000000 1 2"
    assert lines[5] != "0"


SYSCALLS = """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    def call(name, *args):
        result = getattr(libc, name)(*args)
        print(name, "OK" if result == 0 else os.strerror(ctypes.get_errno()))
    call("ptrace", 0, 0, None, None)                                 # PTRACE_TRACEME
    call("ptrace", 16, 1, None, None)                                # PTRACE_ATTACH pid 1
    call("mount", b"none", b"/tmp", b"tmpfs", 0, None)
    call("umount2", b"/scratch", 0)
    call("unshare", 0x10000000)                                      # CLONE_NEWUSER
    call("unshare", 0x00020000)                                      # CLONE_NEWNS
    call("setns", os.open("/proc/self/ns/net", os.O_RDONLY), 0)
    call("syscall", 321, 0, None, 0)                                 # bpf
    call("syscall", 250, 0, None, None, 0)                           # keyctl
    call("syscall", 175, None, 0, b"")                               # init_module
    call("syscall", 169, 0, 0, 0, None)                              # reboot
    call("syscall", 435, None, 0)                                    # clone3
"""


def test_dangerous_system_calls_are_refused() -> None:
    result = python(SYSCALLS)
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 12, result.stderr
    assert all("Operation not permitted" in line for line in lines[:11]), lines
    assert lines[11] == "syscall Function not implemented"  # clone3: libc falls back to clone


def test_no_nested_sandbox_or_user_namespace() -> None:
    result = run(["/usr/bin/bwrap", "--ro-bind", "/", "/", "--unshare-user", "true"], Limits())
    assert result.exit_code != 0


def test_threads_and_subprocesses_still_work() -> None:
    result = python("""
        import subprocess, threading
        done = []
        threads = [threading.Thread(target=done.append, args=(i,)) for i in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(len(done), subprocess.run(["echo", "child"], capture_output=True).stdout.decode())
        """)
    assert result.stdout.decode().split() == ["8", "child"], result.stderr


def test_on_the_host_the_run_is_nobody_not_root() -> None:
    token = f"whoami-{secrets.token_hex(6)}"
    seen: list[str] = []

    def watch() -> None:
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            for pid in processes_with(token):
                status = Path(f"/proc/{pid}/status").read_text()
                uid = next(line for line in status.splitlines() if line.startswith("Uid:"))
                if Path(f"/proc/{pid}/exe").resolve().name.startswith("python"):
                    seen.append(uid)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    python("import time; time.sleep(1)", token)
    watcher.join()
    expected = 65534 if os.geteuid() == 0 else os.geteuid()
    assert seen and seen[0].split()[1:] == [str(expected)] * 4
