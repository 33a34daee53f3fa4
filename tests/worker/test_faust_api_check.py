"""The Faust engine's start-up check of the private API it relies on."""

from __future__ import annotations

import faust
import pytest

from compstream.worker.engines.faust import compat as faust_compat


def test_the_installed_faust_has_every_private_attribute_the_adapter_uses():
    faust_compat.check_private_api(faust.App("api-check", broker="kafka://localhost:1"))


def test_a_missing_private_attribute_stops_the_worker_with_its_name(monkeypatch):
    monkeypatch.setattr(faust_compat, "PRIVATE_CONSUMER_ATTRS",
                        faust_compat.PRIVATE_CONSUMER_ATTRS + ("_renamed_in_a_new_release",))
    with pytest.raises(faust_compat.FaustApiChanged, match="consumer._renamed_in_a_new_release"):
        faust_compat.check_private_api(faust.App("api-check-2", broker="kafka://localhost:1"))
