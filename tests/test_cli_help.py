"""Command help: defaults that are not literal values are declared with
`show_default="..."`, not written as "[default: ...]" into the help text, where
rich markup takes the bracket for a tag and prints nothing ("Broker data dir .")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from compstream.cli.main import app


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    # Duck-typed: typer's groups are not always click.Group instances.
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, path + (name,))


def test_no_option_writes_its_default_into_the_help_text() -> None:
    offenders, seen = [], 0
    for path, cmd in _commands(typer.main.get_command(app)):
        for param in cmd.params:
            seen += 1
            help_text = getattr(param, "help", None) or ""
            if "[default" in help_text:
                offenders.append((" ".join(path), param.name))
    assert seen > 50  # the walk reached the subcommands
    assert offenders == []


def test_broker_start_help_shows_every_default() -> None:
    result = CliRunner().invoke(app, ["broker", "start", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    text = result.output
    for shown in ("$COMPSTREAM_DATA_DIR/kafka", "from COMPSTREAM_KAFKA_BOOTSTRAP, else 19092", "port+1",
                  "$COMPSTREAM_SOURCE_PARTITIONS", "4.1.1", "90.0"):
        assert shown in text, shown
    assert "dir ." not in text and "127.0.0.1 ." not in text


def test_audit_help_shows_the_dsn_default() -> None:
    for command in ("verify", "digest"):
        result = CliRunner().invoke(app, ["audit", command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
        assert result.exit_code == 0, result.output
        assert "COMPSTREAM_CLICKHOUSE_DSN" in result.output, command
        assert "History DSN ." not in result.output
