"""The autonomic loop's cost on SQLite with realistic signal counts: one
Monitor observation, one Analyze pass, one Plan, and one whole step (with
what it keeps in the store), without and with Plan and Execute (dry-run:
decisions planned and recorded, settled, held), as P50/P99 and steps per
second; and the anomaly check of one signal. Baselines, measured in the
same run: the database reads of a /metrics scrape (runs by status, queue
stats), the step without Plan and Execute, and an anomaly check that
recomputes the window's median and MAD on every check.

The database holds 10 tenants x 20 due jobs, 8 worker rows, 20 agents with
10 finished runs each and the default SLOs; 3 model deployments have 200
calls each in their window. Time is injected: each step is one second later.

    .venv/bin/python bench/autonomic_loop.py
    .venv/bin/python bench/autonomic_loop.py --steps 1000
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402

from homeo.autonomic.actuators import Actuators  # noqa: E402
from homeo.autonomic.analyze import Analyzer, Baseline, Diagnosis  # noqa: E402
from homeo.autonomic.execute import Executor, Safety  # noqa: E402
from homeo.autonomic.loop import AutonomicLoop  # noqa: E402
from homeo.autonomic.plan import Planner, Situation  # noqa: E402
from homeo.autonomic.monitor import Monitor  # noqa: E402
from homeo.backends import open_backends  # noqa: E402
from homeo.llm.callstats import CallStats  # noqa: E402
from homeo.observe import logs  # noqa: E402
from homeo.observe.slo.definitions import load_slos  # noqa: E402
from homeo.store.models import NewRun, WorkerRecord  # noqa: E402

T0 = 1_800_000_000.0


def timings(call: Callable[[int], object], count: int) -> list[float]:
    spent = []
    for index in range(count):
        began = time.perf_counter()
        call(index)
        spent.append(time.perf_counter() - began)
    return spent


def row(name: str, spent: list[float], unit: float = 1e3, label: str = "ms") -> str:
    q = statistics.quantiles(spent, n=100)
    return (f"{name:<52} P50 {q[49] * unit:8.3f} {label}  P99 {q[98] * unit:8.3f} {label}"
            f"  {len(spent) / sum(spent):9.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="Steps (and checks x 100) timed.")
    steps = parser.parse_args().steps
    logs.configure("warning", json=False)  # not a line per dry-run decision
    print(machine())
    with tempfile.TemporaryDirectory() as scratch:
        backends = open_backends(f"sqlite:///{scratch}/homeo.db")
        store, queue = backends.store, backends.queue
        for tenant in range(10):
            for job in range(20):
                queue.enqueue(f"t{tenant}", "run", {"n": job}, now=T0 - 30)
        for worker in range(8):
            store.beat_worker(WorkerRecord(id=f"w{worker}", host="h", pid=worker, slots=4,
                                           started_at=T0 - 60, last_seen=T0 - 1))
        for agent in range(20):
            for index in range(10):
                run, _ = store.create_run(NewRun(tenant_id=f"t{agent % 10}",
                                                 agent=f"a{agent}", input="x"), now=T0 - 100)
                store.transition_run(run.tenant_id, run.id,
                                     "failed" if index == 0 else "succeeded",
                                     allowed_from={"queued"}, now=T0 - 100 + index)
        clock = [0.0]
        stats = {name: CallStats(60, clock=lambda: clock[0]) for name in ("a", "b", "c")}
        for calls in stats.values():
            for index in range(200):
                calls.observe(0.1 + (index % 7) / 100, failed=index % 20 == 0)

        def providers() -> list[tuple[str, str, object, None]]:
            return [(name, "closed", calls.window(), None) for name, calls in stats.items()]

        monitor = Monitor(store, queue, slos=load_slos(None), providers=providers,
                          data_dir=Path(scratch))
        seen = monitor.observe(T0)
        print(f"signals per observation: {len(seen.signals)}\n")

        scrape = timings(lambda i: (store.count_runs(), queue.stats()), steps)
        observe = timings(lambda i: monitor.observe(T0 + i), steps)
        analyzer = Analyzer()
        observations = [monitor.observe(T0 + i) for i in range(steps)]
        analyze = timings(lambda i: analyzer.analyze(observations[i]), steps)
        loop = AutonomicLoop(Monitor(store, queue, slos=load_slos(None), providers=providers,
                                     data_dir=Path(scratch)), Analyzer(), store,
                             observer="bench")
        step = timings(lambda i: loop.step(T0 + 10_000 + i), steps)
        executor = Executor(store, Planner(random.Random(0)),
                            Actuators(store, queue, actor="bench"),
                            observer="bench-act", safety=Safety(mode="dry-run",
                                                                settle_seconds=30.0,
                                                                hold_seconds=30.0),
                            aliases=lambda: {"chat": ["a", "b", "c"]})
        acting = AutonomicLoop(Monitor(store, queue, slos=load_slos(None), providers=providers,
                                       data_dir=Path(scratch)), Analyzer(), store,
                               observer="bench-act", executor=executor)
        act = timings(lambda i: acting.step(T0 + 20_000 + i), steps)
        decided = store.list_decisions(limit=100_000)
        planner = Planner(random.Random(1))
        down = Diagnosis("provider_down", "a", 0.9, "a is down")
        situation = Situation(aliases={"chat": ["a", "b", "c"]}, slots=2, base_slots=2,
                              max_slots=4)
        tally = {"open_breaker": (3, 5), "shift_weight": (7, 1)}
        plan = timings(lambda i: planner.plan(down, situation, tally), steps * 10)

        print("baseline: /metrics database reads (runs, queue)")
        print(row("  count_runs + queue.stats", scrape))
        print("homeo")
        print(row("  Monitor.observe", observe))
        print(row("  Analyzer.analyze", analyze))
        print(row("  Planner.plan (2 candidates)", plan))
        print(row("  AutonomicLoop.step (observe, analyze, keep)", step))
        print(row("  AutonomicLoop.step + Plan and Execute (dry-run)", act))
        print(f"  decisions recorded over {steps} steps: {len(decided)}"
              f" ({', '.join(sorted({d.action for d in decided})) or 'none'})")

        baseline = Baseline(samples=120, min_samples=12, every_seconds=5, noise=0.01)
        values = [1.0 + (i % 13) / 100 for i in range(120)]
        for index, value in enumerate(values):
            baseline.offer(value, T0 + 5 * index)
        window = list(baseline.values)

        def naive(i: int) -> float:
            median = statistics.median(window)
            mad = statistics.median(abs(v - median) for v in window)
            return (values[i % 120] - median) / max(1.4826 * mad, 0.01)

        def check(i: int) -> None:
            baseline.z(values[i % 120])
            baseline.offer(values[i % 120], T0 + 600 + i)  # one in 5 000 is taken

        print("\nanomaly check of one signal (120-value window)")
        print(row("  baseline: median and MAD recomputed per check", timings(naive, steps * 100),
                  1e6, "us"))
        print(row("  homeo: Baseline.z + offer", timings(check, steps * 100), 1e6, "us"))
        backends.close()


if __name__ == "__main__":
    main()
