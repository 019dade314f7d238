"""A batch: many inputs of one agent, each a run like any other.

An inputs file has one JSON object a line: `input` (the task, a string),
optionally `id` (names the line in the results; its line number otherwise) and
`user` (the person the run works for, as `homeo run --user`). Each line's run
is submitted through `submit_run` with the idempotency key
`batch:<batch id>:<line id>`, so submitting a line again (the command re-run
after a crash, or a Ray task retried) returns the run it made the first time.

A line that is not such an object is an `InvalidLine` naming its number: it
is reported and skipped, and the others run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from homeo.backends import Backends
from homeo.engine.submit import (
    IdempotencyConflict,
    RunNeedsUser,
    SubmitFailed,
    UnknownAgent,
    submit_run,
)
from homeo.store.models import NewRun, Run

LINE_FIELDS = frozenset({"input", "id", "user"})
# A run that has ended, for a batch: final, or waiting for a person to answer it.
PERSON_WAITS = frozenset({"approval", "input"})


@dataclass(frozen=True)
class BatchLine:
    number: int  # 1-based, as an editor shows it
    id: str
    input: str
    user: str | None = None


@dataclass(frozen=True)
class InvalidLine:
    number: int
    error: str

    def message(self) -> str:
        return f"line {self.number}: {self.error}"


def parse_lines(text: str) -> tuple[list[BatchLine], list[InvalidLine]]:
    """The lines of an inputs file, and those that are not valid (blank lines
    are skipped). Two lines with the same id are both kept out: their runs
    would share one idempotency key."""
    lines: list[BatchLine] = []
    invalid: list[InvalidLine] = []
    first_of: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        parsed = _parse(number, raw)
        if isinstance(parsed, InvalidLine):
            invalid.append(parsed)
        elif parsed.id in first_of:
            invalid.append(InvalidLine(number, f"id {parsed.id!r} is used by line"
                                               f" {first_of[parsed.id]} too; give each line"
                                               " its own id"))
        else:
            first_of[parsed.id] = number
            lines.append(parsed)
    return lines, invalid


def _parse(number: int, raw: str) -> BatchLine | InvalidLine:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        return InvalidLine(number, f"not JSON ({error.msg} at column {error.colno})")
    if not isinstance(value, dict):
        return InvalidLine(number, 'not a JSON object; write {"input": "the task"}')
    unknown = sorted(set(value) - LINE_FIELDS)
    if unknown:
        return InvalidLine(number, f"unknown field(s) {', '.join(unknown)}; a line has"
                                   f" {', '.join(sorted(LINE_FIELDS))}")
    text = value.get("input")
    if not isinstance(text, str) or not text.strip():
        return InvalidLine(number, '"input" is missing or not a non-empty string')
    line_id = value.get("id", f"line-{number}")
    if isinstance(line_id, int) and not isinstance(line_id, bool):
        line_id = str(line_id)
    if not isinstance(line_id, str) or not line_id:
        return InvalidLine(number, '"id" must be a non-empty string or an integer')
    user = value.get("user")
    if user is not None and (not isinstance(user, str) or not user):
        return InvalidLine(number, '"user" must be a non-empty string')
    return BatchLine(number=number, id=line_id, input=text, user=user)


def default_batch_id(agent: str, text: str) -> str:
    """The same agent and inputs make the same batch: running the command again
    picks up its runs. `--batch-id` names a batch instead."""
    digest = hashlib.sha256(f"{agent}\n{text}".encode()).hexdigest()
    return f"b{digest[:16]}"


def idempotency_key(batch_id: str, line: BatchLine) -> str:
    return f"batch:{batch_id}:{line.id}"


class LineRejected(Exception):
    """The line's run could not be submitted (unknown agent, key reused, ...)."""


def submit_line(backends: Backends, tenant_id: str, agent: str, batch_id: str,
                line: BatchLine, *, max_attempts: int, priority: int = 0) -> Run:
    """The line's run: submitted now, or the one submitted for it before."""
    new = NewRun(tenant_id=tenant_id, agent=agent, input=line.input, user_id=line.user,
                 idempotency_key=idempotency_key(batch_id, line))
    try:
        run, _ = submit_run(backends, new, max_attempts=max_attempts, priority=priority)
    except (UnknownAgent, RunNeedsUser, IdempotencyConflict, SubmitFailed) as error:
        raise LineRejected(str(error)) from error
    return run


def has_ended(run: Run) -> bool:
    """Final, or waiting for a person (an approval or an answer): nothing more
    happens to it without someone, so the batch reports it as it stands."""
    if run.is_final:
        return True
    return run.status == "waiting" and (run.waiting_for or {}).get("kind") in PERSON_WAITS


def result_row(line: BatchLine, run: Run) -> dict[str, Any]:
    """What the results file says of a line whose run has ended."""
    return {"line": line.number, "id": line.id, "run_id": run.id, "status": run.status,
            "output": run.output, "error": run.error,
            "input_tokens": run.input_tokens, "output_tokens": run.output_tokens,
            "cost_usd": run.cost_usd}


def rejected_row(line: BatchLine, error: str) -> dict[str, Any]:
    return {"line": line.number, "id": line.id, "run_id": None, "status": "rejected",
            "output": None, "error": error, "input_tokens": 0, "output_tokens": 0,
            "cost_usd": 0.0}


def invalid_row(invalid: InvalidLine) -> dict[str, Any]:
    return {"line": invalid.number, "id": None, "run_id": None, "status": "invalid",
            "output": None, "error": invalid.error, "input_tokens": 0, "output_tokens": 0,
            "cost_usd": 0.0}
