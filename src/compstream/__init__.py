"""compstream: event-sourced compensation stream processor for AI-compute budgets."""

__version__ = "0.1.0"
