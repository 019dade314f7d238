"""The chaos harness (homeo.autonomic.chaos): each scenario it ships, played
with the autonomic loop off then on, against real `homeo worker` processes,
fault servers on 127.0.0.1 and a SQLite database.

What is asserted holds however busy the machine is: no accepted run is lost
in either mode, the loop acted when on and not when off, and with it on the
SLO either never broke or was restored no later than with it off (worker-kill:
sooner, since without the loop the dead worker's runs wait out their leases).
Times are compared with each other, never with a number. The two modes play
side by side (each its own servers, workers and database), so both see the
same machine load, in half the wall time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from homeo.autonomic.chaos.harness import Tuning, run_scenario
from homeo.autonomic.chaos.measure import (
    REFUSED,
    ModeResult,
    RunOutcome,
    Slo,
    recovery,
    summarize,
    table,
)
from homeo.autonomic.chaos.scenarios import SCENARIOS

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
from clikit import homeo, no_homeo_env  # noqa: E402, F401 (an autouse fixture)

# The chaos scenarios run one after another on one xdist worker:
# each starts several processes and plays two modes side by side.
pytestmark = pytest.mark.xdist_group("chaos")

# Short, but long enough for a breaker to open and a heartbeat to go stale;
# generous deadlines for a busy machine.
# The SLO's latency is 15 s, not the command's 5 s: a busy machine may slow a
# healthy run past 5 s in either mode, but only a fault the loop did not handle
# (a dead worker's 30 s leases) takes one past 15 s.
TUNING = Tuning(warmup_seconds=4.0, fault_seconds=14.0, rate=3.0, max_runs=60,
                drain_seconds=240.0, startup_seconds=240.0, slo=Slo(latency_seconds=15.0))


def _play(name: str) -> tuple[ModeResult, ModeResult]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    off, on = run_scenario(SCENARIOS[name], [False, True], TUNING,
                           homeo_command=[sys.executable, "-c",
                                          "from homeo.cli import main; main()"],
                           base_env=env, side_by_side=True)
    return off, on


def _no_loss_and_the_loop_acted(off: ModeResult, on: ModeResult) -> None:
    for result in (off, on):
        assert result.submitted >= 10, result
        assert result.lost == 0, result
    assert sum(off.actions.values()) == 0, off
    assert sum(on.actions.values()) > 0, on
    assert (off.loop, on.loop) == ("off", "on")


def _restored_no_later(off: ModeResult, on: ModeResult) -> None:
    """With the loop the SLO never broke, or came back no later than without it."""
    assert not on.slo_broken or (
        off.recovery_seconds is None
        or (on.recovery_seconds is not None and on.recovery_seconds <= off.recovery_seconds))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["provider-500", "provider-timeout"])
def test_a_provider_fault_loses_nothing_and_the_loop_moves_traffic_off_it(name: str) -> None:
    off, on = _play(name)

    _no_loss_and_the_loop_acted(off, on)
    assert set(on.actions) <= {"open_breaker", "shift_weight"}, on.actions
    _restored_no_later(off, on)
    # Each router's own breaker lets a probe reach the broken deployment every
    # cool-down; the loop holds it open, so fewer calls reach it.
    assert on.faulty_calls < off.faulty_calls, (off, on)


@pytest.mark.slow
def test_a_killed_worker_s_runs_come_back_sooner_with_the_loop() -> None:
    off, on = _play("worker-kill")

    _no_loss_and_the_loop_acted(off, on)
    # Nothing supervises these workers: ending the dead one's leases (and
    # forgetting it) is what the loop can do.
    assert on.actions.get("expire_leases", 0) >= 1, on.actions
    # Without the loop the dead worker's runs wait out their 30 s leases; with
    # it they are requeued once its heartbeat is stale.
    assert off.slo_broken and off.recovery_seconds is not None
    assert not on.slo_broken or (on.recovery_seconds is not None
                                 and on.recovery_seconds < off.recovery_seconds)
    assert on.max_latency_seconds is not None and off.max_latency_seconds is not None
    assert on.max_latency_seconds < off.max_latency_seconds


def test_recovery_is_when_the_last_overdue_run_ended() -> None:
    slo = Slo(latency_seconds=5.0)
    quick = [RunOutcome(t, "succeeded", t + 1.0) for t in (0.0, 1.0, 12.0)]
    assert recovery(quick, 10.0, slo) == (False, 0.0)
    late = [*quick, RunOutcome(9.0, "succeeded", 40.0), RunOutcome(11.0, "failed", 12.0)]
    assert recovery(late, 10.0, slo) == (True, 30.0)
    # Overdue and over before the fault: not the fault's doing.
    assert recovery([*quick, RunOutcome(0.0, "succeeded", 8.0)], 10.0, slo) == (False, 0.0)
    assert recovery([*quick, RunOutcome(11.0, "running", None)], 10.0, slo) == (True, None)


def test_refused_submissions_miss_the_slo_but_are_not_lost() -> None:
    slo = Slo(latency_seconds=5.0)
    runs = [RunOutcome(0.0, "succeeded", 1.0), RunOutcome(11.0, REFUSED, 11.0),
            RunOutcome(14.0, REFUSED, 14.0), RunOutcome(15.0, "succeeded", 16.0)]

    result = summarize("off", runs, 10.0, slo, [], faulty_calls=0)

    assert (result.submitted, result.succeeded, result.refused, result.lost) == (4, 2, 2, 0)
    assert (result.slo_broken, result.recovery_seconds) == (True, 4.0)
    assert result.max_latency_seconds == 1.0  # a refusal is no run's latency
    assert "| submissions refused (disk below its floor) | 2 |" in table("disk-full", [result])


def test_an_unknown_scenario_is_refused_with_the_known_ones() -> None:
    result = homeo("chaos", "run", "disk-filled")

    assert result.exit_code == 2
    assert ("unknown scenario 'disk-filled'; choose one of " + ", ".join(SCENARIOS)
            in " ".join(result.output.split()))
    assert all(name in " ".join(homeo("chaos", "run", "--help").output.split())
               for name in SCENARIOS)


@pytest.mark.slow
def test_a_flooding_tenant_loses_nothing_and_the_loop_holds_it_back() -> None:
    off, on = _play("tenant-flood")

    _no_loss_and_the_loop_acted(off, on)
    assert set(on.actions) <= {"shed_tenant", "pause_tenant"}, on.actions
    # The flood's runs are accepted work: every one is in the store, none
    # failed; a paused tenant's may still wait in line.
    for result in (off, on):
        assert sum(result.others.values()) == 240 and result.others_lost == 0, result.others
        assert set(result.others) <= {"queued", "running", "succeeded"}, result.others
    # The queue's fairness alone keeps the steady tenant served; with the loop
    # the SLO holds too, or comes back no later.
    _restored_no_later(off, on)


@pytest.mark.slow
def test_a_poison_job_is_quarantined_and_the_workers_come_back() -> None:
    off, on = _play("poison-job")

    _no_loss_and_the_loop_acted(off, on)
    assert set(on.actions) <= {"expire_leases", "replace_worker", "quarantine_job",
                               "raise_concurrency"}, on.actions
    # The poison run ends failed in both modes: its attempts spent (each a
    # worker's death), or quarantined to dead letter by the loop first; not
    # when a steady run went down beside it as often (then which one kills is
    # not known, and the loop quarantines neither).
    assert on.others == off.others == {"failed": 1}, (on.others, off.others)
    _restored_no_later(off, on)


@pytest.mark.slow
def test_hung_sandboxes_get_more_slots_beside_them_and_every_hung_run_ends() -> None:
    off, on = _play("sandbox-hang")

    _no_loss_and_the_loop_acted(off, on)
    # Each worker counts its sandbox timeouts in its heartbeat; the loop sees
    # them while jobs wait behind busy slots and gives the workers more.
    assert "raise_concurrency" in on.actions, on.actions
    # The sandbox's time limit ends every hung command, and its run goes on.
    for result in (off, on):
        assert set(result.others) == {"succeeded"} and result.others_lost == 0, result.others
    _restored_no_later(off, on)


@pytest.mark.slow
def test_a_nearly_full_disk_gets_room_back_from_old_checkpoints() -> None:
    off, on = _play("disk-full")

    _no_loss_and_the_loop_acted(off, on)
    # The loop pruned the checkpoints of the runs finished days ago, and gave
    # the room back, so the floor refused no more than without it.
    assert set(on.actions) == {"prune_checkpoints"}, on.actions
    assert on.refused <= off.refused, (on, off)
    _restored_no_later(off, on)


@pytest.mark.slow
def test_leaking_workers_are_recycled_before_the_kernel_kills_one() -> None:
    off, on = _play("memory-leak")

    _no_loss_and_the_loop_acted(off, on)
    # Each worker's heartbeat shows how much it grew since it started; under
    # the cgroup's tightening limit the loop had grown ones recycled.
    assert "recycle_worker" in on.actions, on.actions
    assert on.oom_kills <= off.oom_kills, (on, off)
    _restored_no_later(off, on)
