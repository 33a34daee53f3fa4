"""`compstream audit ...`: tamper-evidence checks over the ClickHouse history.

Exit codes: 0 clean, 1 findings (printed as a table, or as JSON with
`verify --json`), 2 the check could not run.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from compstream.config import Settings
from compstream.history import HistoryError, HistoryStore, open_history, period_bounds
from compstream.history.rows import DigestRow
from compstream.history.verify import period_digest, store_digest, verify_store

console = Console()
err_console = Console(stderr=True)

audit_app = typer.Typer(help="Verify the audit history (hash chains, digests, replay).", no_args_is_help=True)

Dsn = Annotated[str | None, typer.Option("--dsn", help="History DSN.", show_default="COMPSTREAM_CLICKHOUSE_DSN")]
Database = Annotated[str, typer.Option("--database", help="ClickHouse database.")]


def _fail(message: str, as_json: bool = False) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    if as_json:  # a tool reading stdout still gets one document
        typer.echo(json.dumps({"error": message}))
    raise typer.Exit(2)


@audit_app.command()
def verify(
    engineer: Annotated[str | None, typer.Option("--engineer", help="Verify one engineer only.")] = None,
    period: Annotated[str | None, typer.Option("--period", help="YYYY-MM: that month's engineers and digest.")] = None,
    replay: Annotated[bool, typer.Option("--replay/--no-replay", help="Also re-derive postings from events.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print findings and summary as one JSON document.")] = False,
    dsn: Dsn = None,
    database: Database = "compstream",
) -> None:
    """Re-compute hash chains and stored digests; exit 1 with a table (or JSON) of findings."""
    store = None
    try:
        if period is not None:
            period_bounds(period)
        store = open_history(dsn or Settings.from_env().clickhouse_dsn, database=database)
        if engineer is None and period is not None:
            report = verify_store(store, period=period, replay=replay, engineers=_engineers_in(store, period))
        else:
            report = verify_store(store, engineer_id=engineer, period=period, replay=replay)
    except HistoryError as exc:
        _fail(str(exc), as_json)
        return
    except Exception as exc:  # the engine's own errors: unreachable server, missing tables
        _fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", as_json)
        return
    finally:
        if store is not None:
            store.close()
    if as_json:
        document = {"scope": {"engineer": engineer, "period": period, "replay": replay}, **report.to_dict()}
        typer.echo(json.dumps(document, ensure_ascii=False))
        if not report.clean:
            raise typer.Exit(1)
        return
    summary = f"{report.engineers} engineer(s), {report.postings} posting(s) checked"
    if report.clean:
        console.print(f"[green]clean[/]: {summary}")
        return
    shown = len(report.findings)
    total = (f"{shown + report.findings_dropped} finding(s), first {shown} listed" if report.findings_dropped
             else f"{shown} finding(s)")
    table = Table(title=f"{total}; {summary}")
    for column in ("engineer", "seq", "kind", "detail"):
        table.add_column(column, overflow="fold")
    for f in report.findings:
        table.add_row(f.engineer_id, str(f.seq) if f.seq else "-", f.kind, f.detail)
    console.print(table)
    raise typer.Exit(1)


def _engineers_in(store: HistoryStore, period: str) -> list[str]:
    return sorted({p.engineer_id for p in store.postings_by_period(period)})


@audit_app.command()
def digest(
    period: Annotated[str, typer.Option("--period", help="YYYY-MM (UTC month).")],
    save: Annotated[bool, typer.Option("--store/--no-store", help="Append the digest to the digests table.")] = True,
    publish: Annotated[bool, typer.Option(
        "--publish/--no-publish", help="Also publish it on the digests topic (kept outside the database).")] = True,
    force: Annotated[bool, typer.Option("--force", help="Compute before the lateness horizon has passed.")] = False,
    dsn: Dsn = None,
    database: Database = "compstream",
) -> None:
    """Print (and store) the period digest over every engineer's chain head."""
    settings = Settings.from_env()
    store = None
    try:
        _, end = period_bounds(period)
        # Before end + lateness a late posting can still move a head, and the
        # stored digest would later read as tampering.
        horizon = end + timedelta(seconds=settings.lateness_s)
        if save and not force and datetime.now(timezone.utc) < horizon:
            raise HistoryError(f"period {period} is open until {horizon:%Y-%m-%dT%H:%M:%SZ}; use --force or --no-store")
        store = open_history(dsn or settings.clickhouse_dsn, database=database)
        row = store_digest(store, period) if save else period_digest(store, period)
    except HistoryError as exc:
        _fail(str(exc))
        return
    except Exception as exc:
        _fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return
    finally:
        if store is not None:
            store.close()
    console.print(f"{row.period} {row.digest} engineers={row.engineers} postings={row.postings}", highlight=False)
    if save and publish:
        try:
            publish_digest(row, settings.kafka_bootstrap, settings.topics.digests)
        except Exception as exc:  # stored but not published: say so, exit non-zero
            _fail(f"digest stored but not published to {settings.topics.digests}: {exc}")
            return
        console.print(f"published to {settings.topics.digests}")


def publish_digest(row: DigestRow, bootstrap: str, topic: str) -> None:
    """Key = period; every computation is a new record (a changed digest for
    the same period is itself evidence)."""
    from compstream.codec import encode_record
    from compstream.publish import make_producer

    producer = make_producer(bootstrap)
    try:
        producer.send(topic, key=row.period.encode(), value=encode_record("PeriodDigest", {
            "period": row.period, "digest": row.digest, "engineers": row.engineers,
            "postings": row.postings, "computed_at": row.computed_at,
        })).get(timeout=30)
    finally:
        producer.close(timeout=30)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
