"""The `compstream` command. Each command group lives in its own module and
registers itself here; this file only wires them together."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="compstream",
    help="Event-sourced compensation stream processor for AI-compute budgets.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# One module per command group; each exposes register(app).
_COMMAND_MODULES = (
    "broker_cmd",
    "worker_cmd",
    "replay_cmd",
    "ingest_cmd",
    "audit_cmd",
    "report_cmd",
    "ops_cmd",
    "hr_cmd",
)

for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"compstream.cli.{_name}")
    except ModuleNotFoundError as exc:
        # Only a group that does not exist yet is tolerated; a broken import
        # inside an existing module must surface.
        if exc.name != f"compstream.cli.{_name}":
            raise
        continue
    _module.register(app)


if __name__ == "__main__":
    app()
