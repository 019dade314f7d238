"""engine/batch.py: a batch's lines, their idempotency keys and their runs,
on every store backend."""

from __future__ import annotations

import pytest

from homeo.backends import Backends
from homeo.engine.batch import (
    BatchLine,
    LineRejected,
    default_batch_id,
    idempotency_key,
    parse_lines,
    submit_line,
)

TENANT = "acme"
SPEC = {"name": "echo", "description": "echo", "model": "scripted:scriptkit:echo_model",
        "tools": []}


def test_lines_take_their_id_or_number_and_skip_blank_lines() -> None:
    lines, invalid = parse_lines('{"input": "a"}\n\n{"input": "b", "id": 7, "user": "ana"}\n')
    assert invalid == []
    assert lines == [BatchLine(number=1, id="line-1", input="a"),
                     BatchLine(number=3, id="7", input="b", user="ana")]
    assert idempotency_key("b1", lines[1]) == "batch:b1:7"


@pytest.mark.parametrize("raw, error", [
    ('{"input": ""}', '"input" is missing or not a non-empty string'),
    ('{"input": "a", "id": true}', '"id" must be a non-empty string or an integer'),
    ('{"input": "a", "user": 3}', '"user" must be a non-empty string'),
    ("[1]", 'not a JSON object; write {"input": "the task"}'),
])
def test_each_invalid_line_says_what_is_wrong(raw: str, error: str) -> None:
    lines, invalid = parse_lines('{"input": "ok"}\n' + raw)
    assert [line.number for line in lines] == [1]
    assert [(bad.number, bad.error) for bad in invalid] == [(2, error)]


def test_the_batch_id_follows_the_agent_and_the_inputs() -> None:
    text = '{"input": "a"}\n'
    assert default_batch_id("echo", text) == default_batch_id("echo", text)
    assert default_batch_id("echo", text) != default_batch_id("other", text)
    assert default_batch_id("echo", text) != default_batch_id("echo", text + text)


def test_submitting_a_line_again_returns_its_run_and_a_changed_line_is_rejected(
    backends: Backends,
) -> None:
    backends.store.put_agent(TENANT, "echo", SPEC)
    line = BatchLine(number=1, id="q1", input="hello")
    first = submit_line(backends, TENANT, "echo", "b1", line, max_attempts=3)
    again = submit_line(backends, TENANT, "echo", "b1", line, max_attempts=3)
    assert again.id == first.id
    assert first.idempotency_key == "batch:b1:q1"
    assert len(backends.store.list_runs(TENANT)) == 1
    other_batch = submit_line(backends, TENANT, "echo", "b2", line, max_attempts=3)
    assert other_batch.id != first.id
    with pytest.raises(LineRejected, match="was already used for run .* different input"):
        submit_line(backends, TENANT, "echo", "b1",
                    BatchLine(number=1, id="q1", input="changed"), max_attempts=3)
    with pytest.raises(LineRejected, match="unknown agent 'nobody'"):
        submit_line(backends, TENANT, "nobody", "b1", line, max_attempts=3)
