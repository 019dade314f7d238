"""Run untrusted code: bubblewrap namespaces, seccomp, cgroup limits, timeouts.

    from homeo.sandbox import Limits, run
    result = run(["python3", "-c", "print(1)"], Limits(memory_bytes="128M", timeout_seconds="5s"))
"""

from homeo.sandbox.errors import SandboxError, SandboxUnavailable
from homeo.sandbox.limits import Limits, parse_duration, parse_size
from homeo.sandbox.runner import SandboxResult, run

__all__ = ["Limits", "SandboxError", "SandboxResult", "SandboxUnavailable", "parse_duration",
           "parse_size", "run"]
