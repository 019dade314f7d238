"""A model alias: one `Model` that spreads calls over deployments and survives their faults.

For each call the router picks a first deployment at random by weight, then
falls back through the others in the order the alias lists them. On each one:

- its circuit breaker is asked first; an open breaker means "skip it";
- a retryable failure (429, 5xx, timeouts, unreachable) is retried up to
  `retries` times with exponential backoff and full jitter, never sooner than
  the provider's Retry-After; a Retry-After longer than the backoff cap, or
  retries used up, moves on to the next deployment;
- a non-retryable failure (400, 401, a refused request) ends the call at once
  with the provider's message: another deployment would refuse it too.

One attempt is limited by its deployment's timeout, the whole call by
`total_timeout`. Each attempt (of a call, or of a stream until its first
event) is a trace span, `attempt <deployment>`, marked as an error when it
failed; a deployment skipped because its breaker is open is an event on the
caller's span. Clock, randomness and sleep are passed in for tests.

`embed` follows the same rules as `request`. `stream` follows them until the
first event (token or tool-call piece) arrives, which must come within `first_token_timeout`: a stream that
fails or stays silent before then is retried or passed to the next
deployment. After it, the answer is the caller's: a stream that breaks raises
`StreamInterrupted` and is never restarted, since the caller has already
used part of it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from homeo.llm.base import (
    Embeddings,
    Message,
    Model,
    ModelError,
    ModelResponse,
    StreamEnd,
    StreamEvent,
    StreamInterrupted,
    ToolChoice,
    ToolSpec,
    options_given,
)
from homeo.llm.breaker import CircuitBreaker
from homeo.llm.callstats import CallStats
from homeo.observe import logs, tracing

log = logs.get_logger("homeo.llm.router")
R = TypeVar("R")


@dataclass
class Deployment:
    """A model that can serve an alias, with its breaker and its share of first tries."""

    name: str
    model: Model
    breaker: CircuitBreaker
    weight: float = 1.0
    timeout: float = 60.0
    # Shared by name like the breaker: each attempt's outcome and latency.
    stats: CallStats | None = None

    def record(self, seconds: float, *, failed: bool) -> None:
        if self.stats is not None:
            self.stats.observe(seconds, failed=failed)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    total_timeout: float = 120.0
    first_token_timeout: float = 30.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter: uniform(0, min(max, base * 2^retry)) for the retry-th retry (0-based)."""
        return rng.uniform(0, min(self.backoff_max, self.backoff_base * 2**retry))


class AllDeploymentsFailed(ModelError):
    """No deployment of the alias answered; retryable, since breakers close again."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message, retryable=True)
        self.timed_out = timed_out


class Router(Model):
    def __init__(
        self,
        alias: str,
        deployments: Sequence[Deployment],
        policy: RetryPolicy,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tracer: Tracer | None = None,
        weight_factor: Callable[[str, str], float] | None = None,
    ) -> None:
        """`weight_factor(alias, deployment)`, when given, scales each
        deployment's weight (the autonomic loop shifting traffic)."""
        if not deployments:
            raise ValueError(f"alias {alias!r} has no deployments")
        self.name = alias
        self.deployments = list(deployments)
        self.policy = policy
        self.rng = rng or random.Random()
        self.clock = clock
        self.sleep = sleep
        self.tracer = tracer or tracing.tracer_of()
        self.weight_factor = weight_factor

    def weights(self) -> list[float]:
        """Each deployment's share of first tries now; the configured weights
        when the factors would leave none."""
        configured = [d.weight for d in self.deployments]
        if self.weight_factor is None:
            return configured
        scaled = [d.weight * self.weight_factor(self.name, d.name) for d in self.deployments]
        return scaled if any(w > 0 for w in scaled) else configured

    def order(self) -> list[Deployment]:
        """The deployments in the order this call tries them."""
        weights = self.weights()
        weighted = [(d, w) for d, w in zip(self.deployments, weights, strict=True) if w > 0]
        first = self.rng.choices([d for d, _ in weighted], weights=[w for _, w in weighted])[0]
        return [first, *(d for d in self.deployments if d is not first)]

    async def request(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
        tool_choice: ToolChoice | None = None,
        stop: list[str] | None = None,
    ) -> ModelResponse:
        extra = options_given(json_schema=json_schema, tool_choice=tool_choice, stop=stop)
        _, response = await self._call(lambda model: model.request(
            messages, tools, max_tokens=max_tokens, temperature=temperature, **extra
        ))
        return response

    async def embed(self, texts: list[str]) -> Embeddings:
        _, embeddings = await self._call(lambda model: model.embed(texts))
        return embeddings

    async def stream(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tool_choice: ToolChoice | None = None,
        stop: list[str] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        deadline = self.clock() + self.policy.total_timeout
        extra = options_given(tool_choice=tool_choice, stop=stop)

        async def first_event(model: Model) -> tuple[StreamEvent, AsyncIterator[StreamEvent]]:
            events = model.stream(messages, tools, max_tokens=max_tokens,
                                  temperature=temperature, **extra)
            try:
                return await anext(events), events
            except StopAsyncIteration:
                raise ModelError("the stream ended without an answer", retryable=True) from None
            except BaseException:
                await events.aclose()  # type: ignore[attr-defined]
                raise

        deployment, (first, events) = await self._call(first_event, deadline, first_token=True)
        rest = self._rest(deployment, first, events, deadline)
        try:
            async for event in rest:
                yield event
        finally:
            await rest.aclose()

    async def _call(
        self,
        attempt: Callable[[Model], Awaitable[R]],
        deadline: float | None = None,
        *,
        first_token: bool = False,
    ) -> tuple[Deployment, R]:
        """`attempt(model)` on the deployments in turn, by the rules above; the
        deployment that answered, and its answer. `first_token`: the attempt
        waits for a stream's first event, within the first-token timeout too."""
        if deadline is None:
            deadline = self.clock() + self.policy.total_timeout
        waited_for = "first token" if first_token else "answer"
        problems: list[str] = []
        for deployment in self.order():
            retry = 0
            while True:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise AllDeploymentsFailed(
                        self._summary(problems, timed_out=True), timed_out=True
                    )
                if not deployment.breaker.allow():
                    wait = deployment.breaker.retry_in()
                    problems.append(f"{deployment.name}: circuit open (retry in {wait:.0f}s)")
                    trace.get_current_span().add_event(
                        "circuit open", {"homeo.deployment": deployment.name})
                    break
                limit = min(deployment.timeout, remaining)
                if first_token:
                    limit = min(limit, self.policy.first_token_timeout)
                with tracing.span(
                    self.tracer, f"attempt {deployment.name}", kind=SpanKind.CLIENT,
                    attributes={"homeo.alias": self.name, "homeo.deployment": deployment.name,
                                "homeo.retry": retry},
                ) as span:
                    began = self.clock()
                    try:
                        # In this task, not a new one (as wait_for would): a stream
                        # opened here is read on by the caller.
                        async with asyncio.timeout(limit):
                            result = await attempt(deployment.model)
                    except asyncio.CancelledError:
                        deployment.breaker.release()  # the caller left: no verdict on it
                        raise
                    except TimeoutError:
                        deployment.record(self.clock() - began, failed=True)
                        self._failed(deployment)
                        error = ModelError(f"no {waited_for} within {limit:.3g}s",
                                           retryable=True)
                    except ModelError as failure:
                        deployment.record(self.clock() - began, failed=failure.retryable)
                        if not failure.retryable:
                            # The deployment answered; the request itself is refused.
                            deployment.breaker.record_success()
                            raise
                        self._failed(deployment)
                        error = failure
                    else:
                        deployment.record(self.clock() - began, failed=False)
                        if not first_token:  # a stream's verdict waits for its end (_rest)
                            deployment.breaker.record_success()
                        return deployment, result
                    span.set_status(StatusCode.ERROR, str(error))
                problems.append(f"{deployment.name}: {error}")
                wait = self._retry_wait(error, retry, deadline)
                if wait is None:
                    break
                log.info("model call failed, retrying", alias=self.name,
                         deployment=deployment.name, error=str(error), stream=first_token,
                         wait_seconds=round(wait, 3))
                await self.sleep(wait)
                retry += 1
        raise AllDeploymentsFailed(self._summary(problems, timed_out=False))

    async def _rest(
        self,
        deployment: Deployment,
        first: StreamEvent,
        events: AsyncIterator[StreamEvent],
        deadline: float,
    ) -> AsyncIterator[StreamEvent]:
        """The committed stream: `first`, then the rest until its end or the deadline."""
        event = first
        settled = False
        try:
            while True:
                if isinstance(event, StreamEnd):
                    settled = True
                    deployment.breaker.record_success()
                    yield event
                    return
                yield event
                try:
                    async with asyncio.timeout(max(0.0, deadline - self.clock())):
                        event = await anext(events)
                except StopAsyncIteration:
                    failure = ModelError("the stream ended without its final event",
                                         retryable=True)
                except TimeoutError:
                    failure = ModelError(f"the answer took longer than "
                                         f"{self.policy.total_timeout:g}s", retryable=True)
                except ModelError as error:
                    failure = error
                else:
                    continue
                settled = True
                if failure.retryable:
                    self._failed(deployment)
                else:
                    deployment.breaker.record_success()
                raise StreamInterrupted(
                    f"model {self.name!r}: the stream from {deployment.name} broke after its"
                    f" first token: {failure}", retryable=failure.retryable,
                ) from failure
        finally:
            if not settled:
                deployment.breaker.release()  # the caller left: no verdict on the provider
            await events.aclose()

    def _retry_wait(self, error: ModelError, retry: int, deadline: float) -> float | None:
        """How long to wait before trying the same deployment again, or None to
        move on to the next one (out of retries, a Retry-After longer than we
        wait, or past the call's deadline)."""
        if retry >= self.policy.retries:
            return None
        wait = self.policy.backoff(retry, self.rng)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.policy.backoff_max:
                return None  # it asked for longer than we wait: try the next one
            wait = max(wait, retry_after)
        if self.clock() + wait >= deadline:
            return None
        return wait

    def _failed(self, deployment: Deployment) -> None:
        was = deployment.breaker.state
        deployment.breaker.record_failure()
        if was != "open" and deployment.breaker.state == "open":
            log.warning("circuit opened", deployment=deployment.name, was=was,
                        cooldown_seconds=deployment.breaker.policy.cooldown_seconds)

    def _summary(self, problems: list[str], *, timed_out: bool) -> str:
        head = (
            f"model {self.name!r} gave no answer within {self.policy.total_timeout:g}s"
            if timed_out
            else f"every deployment of model {self.name!r} failed"
        )
        tail = "; ".join(problems[-6:]) or "nothing was tried"
        return f"{head}: {tail}"
