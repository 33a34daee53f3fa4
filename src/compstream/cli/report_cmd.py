"""`compstream report ...`: compensation statements and org transparency reports.

Each command writes <name>.json (source of truth), .csv and a self-contained
.html into --out. Exit codes: 0 written, 2 the report could not be made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable

import typer
from rich.console import Console

from compstream.config import Settings
from compstream.history import HistoryError, HistoryStore, open_history
from compstream.reports.export import write_report
from compstream.reports.finality import finality_text
from compstream.reports.period import ReportError, parse_period

console = Console()
err_console = Console(stderr=True)

report_app = typer.Typer(help="Compensation statements and org transparency reports.", no_args_is_help=True)

Dsn = Annotated[str | None, typer.Option("--dsn", help="History DSN.", show_default="COMPSTREAM_CLICKHOUSE_DSN")]
Database = Annotated[str, typer.Option("--database", help="ClickHouse database.")]
Out = Annotated[Path, typer.Option("--out", help="Directory for the .json, .csv and .html files.")]


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _run(build: Callable[[HistoryStore], dict], dsn: str | None, database: str, out: Path) -> None:
    store = None
    try:
        store = open_history(dsn or Settings.from_env().clickhouse_dsn, database=database)
        doc = build(store)
        paths = write_report(doc, out)
    except (ReportError, HistoryError) as exc:
        _fail(str(exc))
        return
    except Exception as exc:  # the engine's own errors: unreachable server, missing tables
        _fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return
    finally:
        if store is not None:
            store.close()
    for kind in ("json", "csv", "html"):
        console.print(f"{kind:4} {paths[kind]}", highlight=False, soft_wrap=True)
    console.print(f"finality: {finality_text(doc['finality'])}", highlight=False, soft_wrap=True)


@report_app.command()
def statement(
    engineer: Annotated[str, typer.Option("--engineer", help="Engineer id.")],
    period: Annotated[str, typer.Option("--period", help="YYYY-MM (UTC month).")],
    dsn: Dsn = None,
    database: Database = "compstream",
    out: Out = Path("."),
) -> None:
    """One engineer's compute-compensation statement for a month."""
    from compstream.reports.statement import build_statement

    try:
        parse_period(period, allow_quarter=False)  # fail before opening the store
    except ReportError as exc:
        _fail(str(exc))
    _run(lambda store: build_statement(store, engineer, period), dsn, database, out)


@report_app.command()
def org(
    period: Annotated[str, typer.Option("--period", help="YYYY-MM or YYYY-Qn (UTC).")],
    dsn: Dsn = None,
    database: Database = "compstream",
    out: Out = Path("."),
) -> None:
    """Org-wide distribution, utilisation, breakage, models and teams (privacy-safe)."""
    from compstream.reports.org import build_org

    try:
        parse_period(period)
    except ReportError as exc:
        _fail(str(exc))
    _run(lambda store: build_org(store, period), dsn, database, out)


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")
