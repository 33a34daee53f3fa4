"""The batch size from the environment: each engine's own default, one override."""

from __future__ import annotations

import pytest

from compstream.config import BATCH_EVENTS_MAX, BATCH_EVENTS_MAX_TRANSACTIONAL, Settings


@pytest.mark.parametrize("engine, events_max", [
    (None, BATCH_EVENTS_MAX_TRANSACTIONAL), ("transactional", BATCH_EVENTS_MAX_TRANSACTIONAL),
    (" Faust ", BATCH_EVENTS_MAX), ("faust", BATCH_EVENTS_MAX)])
def test_each_engine_has_its_default_batch(monkeypatch, engine, events_max):
    monkeypatch.delenv("COMPSTREAM_BATCH_EVENTS_MAX", raising=False)
    if engine is None:
        monkeypatch.delenv("COMPSTREAM_ENGINE", raising=False)
    else:
        monkeypatch.setenv("COMPSTREAM_ENGINE", engine)
    assert Settings.from_env().batch_events_max == events_max


def test_the_defaults_differ_and_an_override_wins_on_either_engine(monkeypatch):
    assert (BATCH_EVENTS_MAX, BATCH_EVENTS_MAX_TRANSACTIONAL) == (20_000, 120_000)
    monkeypatch.setenv("COMPSTREAM_BATCH_EVENTS_MAX", "7000")
    for engine in ("faust", "transactional"):
        monkeypatch.setenv("COMPSTREAM_ENGINE", engine)
        assert Settings.from_env().batch_events_max == 7000
