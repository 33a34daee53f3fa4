"""Pure parts of the ops tooling (no broker)."""

from __future__ import annotations

import pytest

from compstream.ops.dlq import DeadLetterEntry, DlqError, find, hexdump
from compstream.replay.kafka_source import CoordMap, parse_offset_specs


def test_offset_specs():
    assert parse_offset_specs(["5", "2=7", "t.usage:1=9"]) == {
        (None, None): 5, (None, 2): 7, ("t.usage", 1): 9}
    for bad in ("x", "1=", "=3", "-1", "a:b=1"):
        with pytest.raises(ValueError):
            parse_offset_specs([bad])


def test_coord_map():
    m = CoordMap()
    m.add("a", 0, 5)
    m.add("b", 3, 1 << 40)
    assert m.locate(1) == ("b", 3, 1 << 40) and m.locate(0) == ("a", 0, 5)


def test_find_dead_letter_by_id_or_unambiguous_offset():
    entries = [DeadLetterEntry(0, 4, 1, None, "x"), DeadLetterEntry(1, 4, 1, None, "x"),
               DeadLetterEntry(1, 7, 1, None, "x")]
    assert find(entries, "1:4") is entries[1]
    assert find(entries, 7) is entries[2]
    with pytest.raises(DlqError, match="ambiguous"):
        find(entries, "4")
    with pytest.raises(DlqError, match="no dead letter"):
        find(entries, "2:1")


def test_hexdump():
    assert hexdump(b"AB\x00") == "00000000  41 42 00" + " " * 41 + "AB."


def test_runbook_commands_exist():
    """Every `compstream …` command line in the runbook names a real command."""
    import re
    from pathlib import Path

    from typer.main import get_command

    from ops.helpers import cli

    ours = get_command(cli())
    known = {"worker", "broker", "audit", "ingest", "demo"}  # other groups, not imported here
    text = (Path(__file__).parents[2] / "docs" / "runbook.md").read_text()
    lines = re.findall(r"^compstream ([a-z-]+)(?: ([a-z-]+))?", text, flags=re.M)
    assert lines
    for name, sub in lines:
        if name in known:
            continue
        assert name in ours.commands, name
        group = ours.commands[name]
        if hasattr(group, "commands") and sub:
            assert sub in group.commands, f"{name} {sub}"
