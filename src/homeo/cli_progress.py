"""`homeo run`: submit a run, work the queue, print each step as it happens."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rich.console import Console

from homeo.engine.submit import UnknownAgent, submit_run
from homeo.runtime import Runtime
from homeo.store.models import NewRun, Step

CLI_PRIORITY = 10  # ahead of queued background work in this database


def _brief(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line(step: Step) -> str:
    took = ""
    if step.finished_at is not None:
        took = f" {(step.finished_at - step.started_at) * 1000:.0f} ms"
    retry = f" (attempt {step.attempts})" if step.attempts > 1 else ""
    detail = step.error if step.status == "failed" else _brief(step.output)
    if step.status == "running":
        detail = _brief(step.input)
    return f"  step {step.seq} {step.kind:<6} {step.name:<16} {step.status}{retry}{took}  {detail}"


async def run_with_progress(
    runtime: Runtime, agent: str, text: str, out: Console, errors: Console
) -> str:
    settings = runtime.settings
    try:
        run, _ = submit_run(
            runtime.backends,
            NewRun(tenant_id=settings.default_tenant, agent=agent, input=text),
            max_attempts=settings.max_attempts,
            priority=CLI_PRIORITY,
        )
    except UnknownAgent as error:
        errors.print(f"homeo: {error}", markup=False)
        return "failed"
    out.print(f"run {run.id} ({agent}) queued", markup=False)
    worker = runtime.worker(concurrency=1)
    store = runtime.backends.store
    shown: dict[int, tuple[str, int]] = {}
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    try:
        while True:
            current = await asyncio.to_thread(store.get_run, run.tenant_id, run.id) or run
            for step in await asyncio.to_thread(store.list_steps, run.tenant_id, run.id):
                if shown.get(step.seq) != (step.status, step.attempts):
                    shown[step.seq] = (step.status, step.attempts)
                    out.print(_line(step), markup=False, highlight=False)
            if current.is_final:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await serving
    usage = f"{current.input_tokens} in / {current.output_tokens} out tokens"
    if current.status == "succeeded":
        out.print(f"succeeded ({usage})", markup=False)
        out.print(current.output or "", markup=False)
    else:
        out.print(f"{current.status}: {current.error or ''} ({usage})", markup=False)
    return current.status
