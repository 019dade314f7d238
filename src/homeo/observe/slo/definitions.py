"""SLO definitions: a YAML file (HOMEO_SLO_FILE; default.yaml beside this
module when unset) listing each objective, checked with errors that name the
file, the SLO and the field.

Every SLO counts events as good or bad; its objective is the share that must
be good over its window:

- run_success: runs that ended succeeded (good) or failed (bad), of every
  agent or one (`agent`), of every tenant or one (`tenant`);
- step_latency: steps that succeeded, good when they took at most
  `threshold_seconds` ("P95 under 5 s" is objective 0.95, threshold 5),
  of every kind or one (`step_kind`);
- api_latency: API requests, good when their response headers left within
  `threshold_seconds`.

A latency threshold must be a bucket bound of its histogram, so that
Prometheus counts exactly what homeo counts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from homeo.config import DEFAULT_SLO_FILE as DEFAULT_FILE
from homeo.observe.metrics import HTTP_BUCKETS, STEP_BUCKETS
SloKind = Literal["run_success", "step_latency", "api_latency"]
_WINDOW = re.compile(r"^([1-9][0-9]*)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class SloFileError(ValueError):
    """The SLO file is missing, not YAML, or defines an SLO wrongly."""


def window_seconds(window: str) -> int:
    """Seconds in a window such as 5m, 1h, 30d (whole numbers of s, m, h, d or w)."""
    match = _WINDOW.match(window)
    if not match:
        raise ValueError(f"window {window!r} must be a whole number and a unit s, m, h, d or w,"
                         " e.g. 1h or 30d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_window(seconds: int) -> str:
    """The shortest exact spelling of `seconds` in the units Prometheus reads."""
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


class Slo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    description: str = ""
    kind: SloKind
    objective: float = Field(gt=0, lt=1, description="Share of events that must be good.")
    window: str = Field(description="The period the objective holds over, e.g. 30d.")
    threshold_seconds: float | None = Field(None, gt=0)
    tenant: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    agent: str | None = Field(None, min_length=1)
    step_kind: str | None = Field(None, min_length=1)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        seconds = window_seconds(value)
        if seconds < 3600:
            raise ValueError(f"window {value!r} is shorter than 1h; burn rates are shown over"
                             " 5m, 1h and 6h, so give at least 1h")
        return value

    @model_validator(mode="after")
    def _fits_its_kind(self) -> Slo:
        latency = self.kind in ("step_latency", "api_latency")
        if latency and self.threshold_seconds is None:
            raise ValueError(f"a {self.kind} SLO needs threshold_seconds")
        if not latency and self.threshold_seconds is not None:
            raise ValueError("threshold_seconds is for step_latency and api_latency SLOs")
        if self.kind != "run_success" and (self.tenant or self.agent):
            raise ValueError(f"tenant and agent scope run_success SLOs; a {self.kind} SLO covers"
                             " every tenant and agent (its histogram has no such labels)")
        if self.kind != "step_latency" and self.step_kind:
            raise ValueError("step_kind is for step_latency SLOs")
        buckets = {"step_latency": STEP_BUCKETS, "api_latency": HTTP_BUCKETS}.get(self.kind)
        if buckets and self.threshold_seconds not in buckets:
            metric = "homeo_step_seconds" if self.kind == "step_latency" else (
                "homeo_http_request_seconds")
            raise ValueError(
                f"threshold_seconds {self.threshold_seconds:g} is not a bucket bound of {metric};"
                f" use one of {', '.join(f'{b:g}' for b in buckets)}"
            )
        return self

    @property
    def seconds(self) -> int:
        return window_seconds(self.window)

    @property
    def budget(self) -> float:
        """The share of events allowed to be bad."""
        return 1 - self.objective


class SloFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slos: list[Slo]

    @field_validator("slos")
    @classmethod
    def _unique(cls, value: list[Slo]) -> list[Slo]:
        seen: set[str] = set()
        for slo in value:
            if slo.name in seen:
                raise ValueError(f"two SLOs are named {slo.name!r}; names must be unique")
            seen.add(slo.name)
        return value


def load_slos(path: Path | None = None) -> list[Slo]:
    """The SLOs of `path`, or homeo's defaults when it is None."""
    path = path or DEFAULT_FILE
    try:
        text = path.read_text()
    except OSError as error:
        raise SloFileError(f"cannot read SLO file {path}: {error.strerror}; fix HOMEO_SLO_FILE"
                           " or unset it for the defaults") from None
    return parse_slos(text, str(path))


def parse_slos(text: str, source: str) -> list[Slo]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None)
        raise SloFileError(f"{source}: not valid YAML{where}"
                           f"{f' ({problem})' if problem else ''}") from None
    if not isinstance(data, dict) or not isinstance(data.get("slos"), list):
        raise SloFileError(f"{source}: expected a mapping with a list `slos:`, each entry one"
                           " SLO (name, kind, objective, window, ...)")
    try:
        return SloFile.model_validate(data).slos
    except ValidationError as error:
        raise SloFileError(_describe(error, data, source)) from None


def _describe(error: ValidationError, data: dict[str, Any], source: str) -> str:
    """One clause per problem, naming the SLO (by name when it has one) and field."""
    lines = []
    for problem in error.errors():
        loc = problem["loc"]
        message = problem["msg"].removeprefix("Value error, ")
        if len(loc) >= 2 and loc[0] == "slos" and isinstance(loc[1], int):
            entry = data["slos"][loc[1]]
            name = entry.get("name") if isinstance(entry, dict) else None
            which = f"slos[{loc[1]}]" + (f" ({name})" if isinstance(name, str) else "")
            field = ".".join(str(part) for part in loc[2:])
            if field:
                value = problem.get("input")
                shown = "" if problem["type"] == "missing" else f"={value!r}"
                lines.append(f"{source}: {which} field {field}{shown}: {message}")
            else:
                lines.append(f"{source}: {which}: {message}")
        else:
            lines.append(f"{source}: {'.'.join(str(p) for p in loc) or 'file'}: {message}")
    return "; ".join(lines)
