"""How a process's sandboxed runs ended: counted as they end, read by whoever
reports them (a worker writes them in its heartbeat row, so the autonomic
Monitor sees sandbox timeouts and OOM kills across every process).

The built-in tools that run in the sandbox record each result in the tally
their `ToolSettings` carries; one tally per process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from homeo.sandbox.runner import SandboxResult


@dataclass(frozen=True)
class SandboxCounts:
    runs: int = 0
    timeouts: int = 0  # ended by the wall-clock limit
    ooms: int = 0  # a process of the run was killed for memory


class SandboxTally:
    """Counts of sandboxed runs since the process started; safe across threads
    (tools run the sandbox on worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = SandboxCounts()

    def record(self, result: SandboxResult) -> None:
        with self._lock:
            counts = self._counts
            self._counts = SandboxCounts(runs=counts.runs + 1,
                                         timeouts=counts.timeouts + result.timed_out,
                                         ooms=counts.ooms + result.oom_killed)

    def counts(self) -> SandboxCounts:
        with self._lock:
            return self._counts
