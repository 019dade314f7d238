"""homeo: run AI agents durably, securely and observably."""

__version__ = "0.1.0"
