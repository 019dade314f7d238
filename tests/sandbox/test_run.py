"""The positive side: ordinary code works and gives back its output and files."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from homeo.sandbox import Limits, SandboxError, run

STDLIB_WORK = """
    import hashlib, json, sqlite3, pathlib, statistics, sys
    data = json.loads(sys.stdin.read())
    db = sqlite3.connect("work.db")
    db.execute("CREATE TABLE t (x)")
    db.executemany("INSERT INTO t VALUES (?)", [(x,) for x in data])
    total = db.execute("SELECT sum(x) FROM t").fetchone()[0]
    db.commit()
    pathlib.Path("out/report.txt").parent.mkdir()
    pathlib.Path("out/report.txt").write_text(f"total={total}")
    print(total, statistics.mean(data), hashlib.sha256(b"x").hexdigest()[:8])
    print(pathlib.Path("input.csv").read_text().strip(), file=sys.stderr)
"""


def test_standard_library_code_runs_and_returns_output_and_files() -> None:
    result = run(["python3", "-c", textwrap.dedent(STDLIB_WORK)], Limits(),
                 files={"input.csv": "a,b\n"}, stdin=b"[1, 2, 3, 4]")
    assert result.ok, result.stderr
    assert result.stdout == b"10 2.5 2d711642\n"
    assert result.stderr == b"a,b\n"
    assert result.files["out/report.txt"] == b"total=10"
    assert result.files["input.csv"] == b"a,b\n" and "work.db" in result.files
    assert not (result.timed_out or result.oom_killed or result.stdout_truncated)
    assert result.layers == ("bubblewrap", "userns", "rlimits", "seccomp", "cgroup-memory",
                             "cgroup-pids", "cgroup-cpu")


def test_shell_commands_run_with_a_clean_environment() -> None:
    result = run(["sh", "-c", "echo $HOME $PATH; pwd; whoami; hostname; exit 3"], Limits())
    assert result.exit_code == 3
    assert result.stdout.decode().split() == ["/scratch", "/usr/local/bin:/usr/bin:/bin",
                                              "/scratch", "nobody", "sandbox"]


def test_output_beyond_the_caps_is_dropped_and_flagged() -> None:
    code = "import sys; sys.stdout.write('x' * 100000); sys.stderr.write('e' * 10)"
    result = run(["python3", "-c", code], Limits(stdout_bytes="1K", stderr_bytes=4))
    assert result.exit_code == 0
    assert result.stdout == b"x" * 1024 and result.stdout_truncated
    assert result.stderr == b"eeee" and result.stderr_truncated


def test_endless_output_ends_at_the_timeout_with_the_cap_kept() -> None:
    result = run(["yes"], Limits(stdout_bytes=100, timeout_seconds="500ms"))
    assert result.timed_out and result.stdout_truncated and result.stdout == b"y\n" * 50


def test_files_are_bounded_and_links_are_not_followed() -> None:
    code = textwrap.dedent("""
        import os
        open("small", "w").write("s")
        os.symlink("/etc/shadow", "leak")
        os.symlink("/", "root")
        with open("big", "wb", buffering=0) as big:
            print(big.write(b"b" * 5000))
            try:
                big.write(b"more")
            except OSError as error:
                print(error.strerror)
        """)
    result = run(["python3", "-c", code], Limits(file_bytes=4096))
    assert result.stdout == b"4096\nFile too large\n"  # RLIMIT_FSIZE
    assert result.files == {"small": b"s"} and result.files_truncated  # big: past the budget


def test_a_signal_is_reported() -> None:
    result = run(["sh", "-c", "kill -TERM $$"], Limits())
    assert result.exit_code == 128 + 15 and result.signal == 15


def test_bad_input_file_names_and_empty_commands_are_errors() -> None:
    for name in ("../escape", "/etc/passwd"):
        with pytest.raises(SandboxError, match="relative path"):
            run(["true"], Limits(), files={name: "x"})
    with pytest.raises(SandboxError):
        run([], Limits())


def test_no_work_folders_or_cgroups_are_left_behind() -> None:
    # Only this process's: other test processes' sandboxes may run meanwhile.
    mine = f"homeo-sandbox-{os.getpid()}-"
    run(["true"], Limits())
    assert [n for n in os.listdir("/dev/shm") if n.startswith(mine)] == []
    assert list(Path("/sys/fs/cgroup").glob(f"*/**/{mine}*")) == []


def test_scratch_files_are_capped_by_count_and_by_bytes_of_names() -> None:
    code = "for n in range(1500): open(f'{n:04d}' + 'n' * 96, 'w').close()"
    result = run(["python3", "-c", code], Limits(), max_files=1000)
    assert len(result.files) == 1000 and result.files_omitted == 500
    assert result.files_truncated and result.files_omitted_bytes == 500 * 100
    names = run(["python3", "-c", code], Limits(), files_budget=10_000)
    assert len(names.files) == 100  # 100 bytes of name each
    assert names.files_omitted == 1400
