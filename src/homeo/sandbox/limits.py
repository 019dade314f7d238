"""What one sandboxed run may use: memory, processes, CPU, time, output."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from homeo.config import Settings

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.I)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(value: str | int) -> int:
    """Bytes from `1048576`, `"512K"`, `"256M"`, `"1.5G"` (binary units)."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size such as 256M, 512K or 1G")
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[unit.upper()])


def parse_duration(value: str | float) -> float:
    """Seconds from `5`, `"5s"`, `"500ms"`, `"2m"`, `"7d"`."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 5s, 500ms or 2m")
    number, unit = match.groups()
    return float(number) * _DURATION_UNITS[(unit or "s").lower()]


class Limits(BaseModel):
    """Resource limits for one run. Sizes and durations accept strings ("256M", "5s")."""

    model_config = ConfigDict(frozen=True)

    memory_bytes: int = Field(256 * 2**20, ge=16 * 2**20, description="cgroup memory limit")
    pids: int = Field(64, ge=4, le=65536, description="cgroup pids.max (threads count)")
    cpu: float = Field(1.0, gt=0, le=256, description="CPU quota in cores (0.5 = half a core)")
    timeout_seconds: float = Field(10.0, gt=0, le=86400, description="wall clock, whole tree")
    stdout_bytes: int = Field(2**20, ge=0, description="stdout kept; the rest is dropped")
    stderr_bytes: int = Field(2**20, ge=0, description="stderr kept; the rest is dropped")
    file_bytes: int = Field(16 * 2**20, ge=0, description="largest file; scratch files returned")
    open_files: int = Field(256, ge=16, le=65536, description="RLIMIT_NOFILE")

    @field_validator("memory_bytes", "stdout_bytes", "stderr_bytes", "file_bytes", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("timeout_seconds", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


def limits_from_settings(settings: Settings) -> Limits:
    """The operator's limits (HOMEO_SANDBOX_*)."""
    output = parse_size(settings.sandbox_output_bytes)
    return Limits(memory_bytes=settings.sandbox_memory, pids=settings.sandbox_pids,
                  cpu=settings.sandbox_cpu, timeout_seconds=settings.sandbox_timeout,
                  stdout_bytes=output, stderr_bytes=output)
