"""Helpers for tests that talk to the real local Kafka broker."""

from __future__ import annotations

import re
import socket
import uuid
from dataclasses import fields

from compstream.config import Topics


def free_port() -> int:
    """A port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_topics(label: str = "t") -> Topics:
    """Topics whose names no other test (or earlier run) uses."""
    slug = re.sub(r"[^a-zA-Z0-9-]+", "-", label).strip("-")[:40] or "t"
    prefix = f"test.{slug}.{uuid.uuid4().hex[:8]}"
    return Topics(**{f.name: f"{prefix}.{f.name.replace('_', '-')}" for f in fields(Topics)})
