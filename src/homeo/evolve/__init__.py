"""Agents that get better measurably: versions and their KPIs, evaluation suites."""
