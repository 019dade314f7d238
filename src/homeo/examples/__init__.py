"""Example agents and tools that run at once, offline, on the shipped local model."""
