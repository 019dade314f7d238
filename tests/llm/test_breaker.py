"""The circuit breaker against a plain reference model, driven by hypothesis.

Hypothesis picks a policy, then interleaves clock ticks, calls asking to go
through, and those calls ending (success, failure, abandoned); after every step
the breaker must be in the state the reference says. Time is an integer clock
that only the test moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from homeo.llm.breaker import BreakerPolicy, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> float:
        return self.now


@dataclass
class Reference:
    """The specification, written out longhand."""

    policy: BreakerPolicy
    state: str = "closed"
    outcomes: list[tuple[int, bool]] = field(default_factory=list)  # (when, failed)
    opened_at: int = 0
    probes: int = 0
    probe_successes: int = 0

    def at(self, now: int) -> str:
        if self.state == "open" and now - self.opened_at >= self.policy.cooldown_seconds:
            self.state, self.probes, self.probe_successes = "half_open", 0, 0
        self.outcomes = [o for o in self.outcomes if o[0] > now - self.policy.window_seconds]
        return self.state

    def allow(self, now: int) -> bool:
        state = self.at(now)
        if state == "half_open" and self.probes < self.policy.probes:
            self.probes += 1
            return True
        return state == "closed"

    def end(self, now: int, outcome: str) -> None:
        state = self.at(now)
        if state == "half_open":
            if outcome == "failure":
                self.state, self.opened_at, self.outcomes = "open", now, []
                return
            self.probes = max(0, self.probes - 1)
            if outcome == "success":
                self.probe_successes += 1
                if self.probe_successes >= self.policy.probes:
                    self.state, self.outcomes = "closed", []
        elif state == "closed" and outcome != "abandoned":
            self.outcomes.append((now, outcome == "failure"))
            failures = sum(failed for _, failed in self.outcomes)
            calls = len(self.outcomes)
            if calls >= self.policy.min_calls and failures >= self.policy.failure_rate * calls:
                self.state, self.opened_at, self.outcomes = "open", now, []


class BreakerMachine(RuleBasedStateMachine):
    @initialize(
        failure_rate=st.sampled_from([0.25, 0.5, 1.0]),
        window=st.integers(1, 10),
        min_calls=st.integers(1, 4),
        cooldown=st.integers(0, 5),
        probes=st.integers(1, 3),
    )
    def configure(
        self, failure_rate: float, window: int, min_calls: int, cooldown: int, probes: int
    ) -> None:
        policy = BreakerPolicy(failure_rate, window, min_calls, cooldown, probes)
        self.clock = Clock()
        self.breaker = CircuitBreaker(policy, clock=self.clock)
        self.reference = Reference(policy)
        self.in_flight = 0

    @rule(seconds=st.integers(0, 6))
    def tick(self, seconds: int) -> None:
        self.clock.now += seconds

    @rule()
    def call(self) -> None:
        allowed = self.breaker.allow()
        assert allowed == self.reference.allow(self.clock.now)
        self.in_flight += allowed

    @precondition(lambda self: self.in_flight > 0)
    @rule(outcome=st.sampled_from(["success", "failure", "abandoned"]))
    def end(self, outcome: str) -> None:
        self.in_flight -= 1
        {"success": self.breaker.record_success, "failure": self.breaker.record_failure,
         "abandoned": self.breaker.release}[outcome]()
        self.reference.end(self.clock.now, outcome)

    @invariant()
    def same_state(self) -> None:
        if hasattr(self, "breaker"):
            expected = self.reference.at(self.clock.now)
            assert self.breaker.state == expected
            if expected == "closed":
                calls = len(self.reference.outcomes)
                failures = sum(failed for _, failed in self.reference.outcomes)
                assert self.breaker.window() == (calls, failures)


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40,
                                            deadline=None)
test_breaker_transitions = BreakerMachine.TestCase


def test_every_transition_in_order() -> None:
    """closed -> open -> half-open -> open -> half-open -> closed, spelled out."""
    clock = Clock()
    breaker = CircuitBreaker(
        BreakerPolicy(failure_rate=0.5, window_seconds=60, min_calls=4, cooldown_seconds=30,
                      probes=2),
        clock=clock,
    )
    for failed in (False, True, False):
        assert breaker.allow()
        breaker.record_failure() if failed else breaker.record_success()
    assert breaker.state == "closed"  # 1 failure in 3 calls: under the minimum
    assert breaker.allow()
    breaker.record_failure()  # 2 of 4 fail: 50%
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.retry_in() == 30
    clock.now = 29
    assert not breaker.allow()
    clock.now = 30
    assert breaker.state == "half_open"
    assert breaker.allow() and breaker.allow()
    assert not breaker.allow()  # only two probes at a time
    breaker.record_success()
    breaker.record_failure()  # one probe failed: open again, a new cool-down
    assert breaker.state == "open"
    clock.now = 60
    assert breaker.allow() and breaker.allow()
    breaker.record_success()
    assert breaker.state == "half_open"
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.window() == (0, 0)


def test_old_failures_leave_the_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        BreakerPolicy(failure_rate=0.5, window_seconds=10, min_calls=2), clock=clock
    )
    breaker.record_failure()
    clock.now = 10  # the first failure is now outside the 10 s window
    breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.window() == (1, 1)
