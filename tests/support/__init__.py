"""Shared test helpers (kept out of conftest.py so they can be imported)."""
