"""A circuit breaker for one deployment: stop calling a provider that keeps failing.

    closed     calls pass; outcomes are kept for `window_seconds`. Once at least
               `min_calls` are in the window and the share of failures reaches
               `failure_rate`, the breaker opens.
    open       calls are refused until `cooldown_seconds` have passed, then the
               breaker is half-open.
    half-open  at most `probes` calls pass at a time. A failure opens the breaker
               again (a new cool-down); `probes` successes close it with an
               empty window.

The clock is passed in, so tests drive every transition without sleeping.
`held`, when given, may hold the breaker open or closed from outside (the
autonomic loop's shared control state): while it says so, `state` is that,
whatever the breaker itself would be (`own_state`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]
STATES: tuple[State, ...] = ("closed", "half_open", "open")


@dataclass(frozen=True)
class BreakerPolicy:
    failure_rate: float = 0.5
    window_seconds: float = 60.0
    min_calls: int = 5
    cooldown_seconds: float = 30.0
    probes: int = 1


class CircuitBreaker:
    def __init__(
        self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic,
        held: Callable[[], State | None] | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.held = held
        self._state: State = "closed"
        self._outcomes: deque[tuple[float, bool]] = deque()  # (when, failed)
        self._failures = 0  # failures in _outcomes, kept so no call scans the window
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._probe_successes = 0

    @property
    def state(self) -> State:
        return self.held_state or self.own_state

    @property
    def held_state(self) -> State | None:
        """The state it is held at from outside, or None (its own)."""
        return self.held() if self.held is not None else None

    @property
    def own_state(self) -> State:
        """The state from this breaker's own calls, whatever it is held at."""
        if self._state == "open" and self.clock() - self._opened_at >= self.policy.cooldown_seconds:
            self._state = "half_open"
            self._probes_in_flight = 0
            self._probe_successes = 0
        return self._state

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._opened_at + self.policy.cooldown_seconds - self.clock())

    def allow(self) -> bool:
        """May a call go through now? A `True` in half-open takes a probe slot,
        which the call's `record_success` or `record_failure` gives back."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and self._probes_in_flight < self.policy.probes:
            self._probes_in_flight += 1
            return True
        return False

    def release(self) -> None:
        """The call was abandoned before an outcome: give its probe slot back."""
        if self.state == "half_open":
            self._probes_in_flight = max(0, self._probes_in_flight - 1)

    def record_success(self) -> None:
        state = self.state
        if state == "half_open":
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._probe_successes += 1
            if self._probe_successes >= self.policy.probes:
                self._state = "closed"
                self._forget_all()
        elif state == "closed":
            self._remember(failed=False)

    def record_failure(self) -> None:
        state = self.state
        if state == "half_open":
            self._open()
        elif state == "closed":
            self._remember(failed=True)

    def window(self) -> tuple[int, int]:
        """(calls, failures) in the sliding window."""
        self._forget_old()
        return len(self._outcomes), self._failures

    def _remember(self, *, failed: bool) -> None:
        # Judged after every outcome: a success can bring the window up to
        # `min_calls` with the failure rate already over the threshold.
        self._outcomes.append((self.clock(), failed))
        self._failures += failed
        calls, failures = self.window()
        if calls >= self.policy.min_calls and failures >= self.policy.failure_rate * calls:
            self._open()

    def _forget_old(self) -> None:
        horizon = self.clock() - self.policy.window_seconds
        while self._outcomes and self._outcomes[0][0] <= horizon:
            self._failures -= self._outcomes.popleft()[1]

    def _forget_all(self) -> None:
        self._outcomes.clear()
        self._failures = 0

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self.clock()
        self._forget_all()
