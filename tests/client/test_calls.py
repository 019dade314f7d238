"""Retries on 429 and 503 (honouring Retry-After, with an injected sleep that
moves the server's clock instead of waiting), and the SSE reader."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from homeo.client import EndEvent, Homeo, OtherEvent, RateLimited, Retries, StepEvent
from homeo.client.calls import EventReader
from tests.api.conftest import Served


class Clock:
    """The server's clock, moved forward by the client's sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.lock = threading.Lock()
        self.slept: list[float] = []

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)
            self.now += seconds


def answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


def test_only_429_and_503_are_retried_with_growing_backoff() -> None:
    retries = Retries(attempts=3, backoff=0.5, max_backoff=1.5)
    assert [retries.delay(n, answer(503)) for n in range(4)] == [0.5, 1.0, 1.5, None]
    assert retries.delay(0, answer(500)) is None and retries.delay(0, answer(404)) is None
    assert retries.delay(0, answer(429, **{"retry-after": "7"})) == 7.0
    assert retries.delay(2, answer(429, **{"retry-after": "0"})) == 1.5  # backoff is the floor
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < retries.delay(0, answer(503, **{"retry-after": later})) <= 120
    assert Retries(attempts=0).delay(0, answer(429)) is None


def test_a_rate_limited_call_is_retried_after_retry_after(
    serve: Callable[..., Served]
) -> None:
    clock = Clock()
    served = serve(wall_clock=clock, key_rate_limit="1/minute")
    with Homeo(served.url, served.key, sleep=clock.sleep) as homeo:
        assert homeo.agents.list()  # the minute's one call
        assert homeo.agents.list()  # 429 Retry-After: 60, slept (the clock moved), then 200
        assert clock.slept == [60.0]
    with Homeo(served.url, served.key, sleep=clock.sleep,
               retries=Retries(attempts=0)) as impatient:
        with pytest.raises(RateLimited) as limited:
            impatient.agents.list()  # the token went to the retry above
        assert limited.value.retry_after == 60.0 and limited.value.status == 429
        assert "rate limit" in limited.value.message and limited.value.request_id
        assert clock.slept == [60.0]  # no retry: the error at once


def test_server_sent_events_become_typed_events() -> None:
    reader = EventReader()
    lines = [": keep-alive", "", "event: step", 'data: {"seq": 0, "kind": "model",',
             'data: "name": "model", "status": "running", "input": null, "output": null,'
             ' "error": null, "attempts": 1, "started_at": null, "finished_at": null,'
             ' "duration_ms": null, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0}',
             "", "event: novel", "data: [1]", "", "event: end",
             'data: {"id": "run_1", "status": "failed"}', ""]
    events = [event for line in lines for event in reader.feed(line)]
    assert [type(event) for event in events] == [StepEvent, OtherEvent, EndEvent]
    assert events[0].step.status == "running" and events[1].data == [1]
    assert events[2].status == "failed"
