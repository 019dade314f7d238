"""The autonomic loop: Monitor (monitor.py), Analyze (analyze.py), Plan
(plan.py), Execute (actuators.py, execute.py, through the shared control
state of control.py) and the knowledge it keeps in the store (loop.py)."""
