"""The autonomic loop: Monitor (monitor.py), Analyze (analyze.py) and the
knowledge it keeps in the store (loop.py)."""
