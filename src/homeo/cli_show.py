"""How runs and steps read on a terminal: what `homeo run` and `homeo runs` print."""

from __future__ import annotations

import datetime
import json
from typing import Any

from homeo.store.models import Run, Step

# A value is shown whole up to this length (the terminal wraps it); past it, it
# is cut and the line says how much was left out.
LONG_VALUE_CHARS = 2000


def whole(value: Any, limit: int = LONG_VALUE_CHARS) -> str:
    """`value` as text (JSON unless it is a string), cut only past `limit`."""
    text = value if isinstance(value, str) else json.dumps(value, default=str,
                                                           ensure_ascii=False)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def step_line(step: Step) -> str:
    took = ""
    if step.finished_at is not None:
        took = f" {(step.finished_at - step.started_at) * 1000:.0f} ms"
    retry = f" (attempt {step.attempts})" if step.attempts > 1 else ""
    head = f"  step {step.seq} {step.kind:<6} {step.name:<16} {step.status}{retry}{took}"
    return f"{head}  {step_detail(step)}"


def step_detail(step: Step) -> str:
    """What a step works on while it runs, what it gave once done, or why it failed."""
    if step.status == "failed":
        return step.error or ""
    value = step.input if step.status == "running" else step.output
    if isinstance(value, dict):
        if step.kind == "tool" and step.status == "running" and "arguments" in value:
            return whole(value["arguments"])  # the call's id and name are on the line
        if step.kind == "tool" and set(value) == {"result"}:
            return whole(value["result"])
        if step.kind == "tool" and set(value) == {"error"}:
            return f"error: {whole(value['error'])}"
        if step.kind == "model" and step.status == "running" and "messages" in value:
            return f"{value.get('model', '')} reads {value['messages']} messages".strip()
        if step.kind == "model" and value.get("role") == "assistant":
            calls = [f"{call.get('name')} {whole(call.get('arguments', {}))}"
                     for call in value.get("tool_calls") or []]
            return "calls " + "; ".join(calls) if calls else whole(value.get("content") or "")
    return whole(value)


def when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{datetime.datetime.fromtimestamp(seconds, datetime.UTC):%Y-%m-%d %H:%M:%S}Z"


def usage(run: Run) -> str:
    cost = f", ${run.cost_usd:.6f}" if run.cost_usd else ""
    return f"{run.input_tokens} in / {run.output_tokens} out tokens{cost}"


def took(run: Run) -> str:
    if run.started_at is None:
        return "not started"
    if run.finished_at is None:
        return "still going"
    return f"{run.finished_at - run.started_at:.1f} s"


def outcome_lines(run: Run) -> list[str]:
    """How a followed run ended: its status and usage, then its output or error."""
    if run.status == "succeeded":
        return [f"succeeded ({usage(run)})", run.output or ""]
    return [f"{run.status}: {run.error or ''} ({usage(run)})"]


def waiting_lines(run: Run) -> list[str]:
    """What a waiting run waits for, and the commands that answer it."""
    wait = run.waiting_for or {}
    detail = wait.get("detail", {})
    deadline = f" (until {when(wait['deadline'])})" if wait.get("deadline") else ""
    if wait.get("kind") == "approval":
        arguments = json.dumps(detail.get("arguments"), ensure_ascii=False)
        return [f"waiting for approval{deadline}: {detail.get('tool')} {arguments}",
                f"  approve: homeo runs approve {run.id} [--arguments JSON] [--comment TEXT]",
                f"  reject:  homeo runs reject {run.id} --comment TEXT"]
    if wait.get("kind") == "input":
        return [f"waiting for an answer{deadline}: {detail.get('question')}",
                f"  answer:  homeo runs input {run.id} TEXT"]
    return [f"waiting for child runs to end: {', '.join(detail.get('runs', []))}"]


def run_lines(run: Run, steps: list[Step]) -> list[str]:
    """`homeo runs show`: the run, then each step."""
    lines = [
        f"run {run.id}  agent {run.agent}  tenant {run.tenant_id}  {run.status}",
        f"  created  {when(run.created_at)}  started {when(run.started_at)}"
        f"  finished {when(run.finished_at)}  ({took(run)})",
        f"  usage    {usage(run)}",
        f"  input    {whole(run.input)}",
    ]
    if run.output is not None:
        lines.append(f"  output   {whole(run.output)}")
    if run.error:
        lines.append(f"  error    {run.error}")
    if run.parent_run_id:
        lines.append(f"  parent   {run.parent_run_id}")
    if run.status == "waiting":
        lines.extend(f"  {line}" for line in waiting_lines(run))
    if run.forked_from_run is not None:
        lines.append(f"  forked   from run {run.forked_from_run} after step {run.forked_from_step}")
    lines.append(f"steps ({len(steps)})")
    lines.extend(step_line(step) for step in steps)
    return lines


def run_table(runs: list[Run]) -> list[str]:
    """`homeo runs list`: one row per run, under a header."""
    agent = max([len("AGENT"), *(len(run.agent) for run in runs)])
    rows = [f"{'ID':<26}  {'AGENT':<{agent}}  {'STATUS':<9}  {'CREATED':<20}  {'TOKENS':>7}"
            "  INPUT"]
    for run in runs:
        preview = run.input.replace("\n", " ")
        preview = preview if len(preview) <= 40 else preview[:39] + "…"
        rows.append(f"{run.id:<26}  {run.agent:<{agent}}  {run.status:<9}  "
                    f"{when(run.created_at):<20}  {run.input_tokens + run.output_tokens:>7}"
                    f"  {preview}")
    return rows
