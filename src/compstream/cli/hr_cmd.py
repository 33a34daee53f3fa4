"""`compstream hr import FILE…` and `compstream grants issue`: the HR side.

Both read what was published before (the grants topic, plus the usage topic
when a rule rolls budget over; or `--events FILE` for an offline event log),
derive events with deterministic ids, and publish only what is new to the
grants topic. `--dry-run` writes the events as JSON Lines instead.

Exit codes: 0 done; 1 some input rejected (`hr import`: those files published
nothing); 2 unusable input, history or a failed delivery (re-run is safe).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from compstream.config import Settings
from compstream.domain.events import Event, GrantIssued, event_to_json
from compstream.hr.history import HistoryError, Prior, from_files, from_kafka
from compstream.reports.money import usd

EXIT_REJECTED = 1
EXIT_FAILED = 2
SHOWN_ERRORS_MAX = 50
PROGRESS_ROWS_MIN = 2_000  # a bar only when there is something to wait for

hr_app = typer.Typer(name="hr", help="HR intake: grants, revocations, teams, offboardings, pay, opt-outs.",
                     no_args_is_help=True)
grants_app = typer.Typer(name="grants", help="Allowance policies: derive a period's grants.", no_args_is_help=True)


def _progress(err: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                    transient=True)


def _prior(events_files: list[Path] | None, settings: Settings, usage: bool, err: Console) -> Prior:
    if events_files:
        prior = from_files(events_files)
    else:
        with _progress(err) as bar:
            task = bar.add_task("reading the history from Kafka", total=None)
            prior = from_kafka(settings, usage=usage, on_record=lambda: bar.advance(task))
    for bad in prior.bad[:SHOWN_ERRORS_MAX]:
        err.print(f"[yellow]history: skipped unreadable record[/yellow] {escape(bad)}", highlight=False)
    return prior


def _deliver(events: list[Event], settings: Settings, dry_run: bool, output: Optional[str],
             err: Console) -> tuple[int, str]:
    """Write or publish `events`; returns (count, where)."""
    if dry_run or output:
        handle = open(output, "w", encoding="utf-8") if output and output != "-" else sys.stdout
        try:
            for e in events:
                handle.write(event_to_json(e) + "\n")
        finally:
            if handle is not sys.stdout:
                handle.close()
        target = output if output and output != '-' else 'stdout'
        return len(events), ("dry run, " if dry_run else "") + f"JSONL to {target}"
    from compstream.ingest.publish import publish

    topic = settings.topics.grants  # every HR event lives on the grants topic (publish.topic_for)
    sent = 0
    with _progress(err) as bar:
        task = bar.add_task(f"publishing to {topic}", total=len(events), visible=len(events) >= PROGRESS_ROWS_MIN)
        for _ in publish(events, settings.kafka_bootstrap, topic):
            sent += 1
            bar.advance(task)
    return sent, f"Kafka {settings.kafka_bootstrap} topic {topic}"


def _summary(err: Console, title: str, rows: Iterable[tuple[str, object]]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for label, value in rows:
        table.add_row(label, str(value))
    err.print(table)


# ---------------------------------------------------------------- hr import
@hr_app.command("import")
def import_command(
    files: list[Path] = typer.Argument(..., help="HR exports: CSV or JSON Lines (see docs/hr.md)."),
    roster: Optional[Path] = typer.Option(None, "--roster", help="Roster CSV: its engineers count as known."),
    events_files: Optional[list[Path]] = typer.Option(
        None, "--events", help="Prior events as canonical JSONL instead of reading the grants topic."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Validate and write the new events as JSONL; publish nothing."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write the new events here instead of Kafka."),
) -> None:
    """Validate HR rows and publish them as events (a file with a bad row publishes nothing)."""
    from compstream.hr.roster import RosterError, load_roster
    from compstream.hr.runs import import_texts

    err = Console(stderr=True, soft_wrap=True)
    settings = Settings.from_env()
    try:
        engineers = {r.engineer for r in load_roster(roster)} if roster is not None else set()
        prior = _prior(events_files, settings, False, err)
    except (RosterError, HistoryError) as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    texts = []
    for path in files:
        try:
            texts.append((str(path), path.read_text(encoding="utf-8-sig")))
        except (OSError, UnicodeDecodeError) as exc:
            err.print(f"[red]{escape(str(path))}: cannot read: {escape(str(exc))}[/red]")
            raise typer.Exit(EXIT_FAILED) from None
    rows_total = sum(text.count("\n") for _, text in texts)
    with _progress(err) as bar:
        task = bar.add_task("checking rows", total=rows_total, visible=rows_total >= PROGRESS_ROWS_MIN)
        outcome = import_texts(texts, prior, engineers, on_row=lambda name: lambda: bar.advance(task))
    results, new = outcome.results, outcome.new
    rejected = outcome.rejected
    shown = 0
    for result in rejected:
        for error in result.errors:
            if shown < SHOWN_ERRORS_MAX:
                err.print(f"[red]rejected[/red] {escape(str(error))}", highlight=False)
            shown += 1
        err.print(f"[red]{escape(result.name)}: {len(result.errors)} bad row(s); nothing from this file is "
                  f"published[/red]", highlight=False)
    if shown > SHOWN_ERRORS_MAX:
        err.print(f"... {shown - SHOWN_ERRORS_MAX} more errors not shown")
    accepted_rows = outcome.accepted_rows
    try:
        sent, where = _deliver(new, settings, dry_run, output, err)
    except Exception as exc:  # PublishError, OSError: nothing is recorded, a re-run is safe
        err.print(f"[red]delivery failed (re-run is safe, ids are deterministic):[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_FAILED) from None
    by_type: dict[str, int] = {}
    for e in new:
        by_type[e.type] = by_type.get(e.type, 0) + 1
    _summary(err, f"hr import ({where})", [
        ("files", len(results)), ("files rejected", len(rejected)),
        ("rows read", sum(r.rows_read for r in results)),
        ("rows accepted", accepted_rows),
        ("duplicate rows in a file", sum(r.duplicates for r in results if r.accepted)),
        ("already published", accepted_rows - len(new)),
        ("new events" + (" (not published: dry run)" if dry_run else ""), len(new)),
        *((f"  {t}", n) for t, n in sorted(by_type.items())),
        ("written" if dry_run or output else "delivered", sent),
    ])
    raise typer.Exit(EXIT_REJECTED if rejected else 0)


# ------------------------------------------------------------- grants issue
@grants_app.command("issue")
def issue_command(
    period: str = typer.Option(..., "--period", help="The run month, YYYY-MM (quarterly rules: its quarter)."),
    policy_files: list[Path] = typer.Option(..., "--policy", help="Policy TOML; repeat for every version in force."),
    roster_file: Path = typer.Option(..., "--roster", help="Roster CSV (engineer,level,team,start,end)."),
    events_files: Optional[list[Path]] = typer.Option(
        None, "--events", help="Prior events as canonical JSONL instead of reading the Kafka source topics."),
    explain: Optional[list[str]] = typer.Option(
        None, "--explain", help="Print why ENGINEER gets what (repeatable); publishes nothing."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write the events as JSONL; publish nothing."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write the events here instead of Kafka."),
) -> None:
    """Derive the period's grants from policy + roster; publish only the difference."""
    from compstream.hr.explain import explain as explain_text
    from compstream.hr.periods import PeriodError
    from compstream.hr.policy import PolicyError
    from compstream.hr.roster import RosterError
    from compstream.hr.runs import issue_grants, load_policies, rolls_over

    err = Console(stderr=True, soft_wrap=True)
    settings = Settings.from_env()
    try:
        policies = load_policies(policy_files)
        prior = _prior(events_files, settings, rolls_over(policies), err)
        issue = issue_grants(period, policies, roster_file, prior)
    except (PeriodError, PolicyError, RosterError, HistoryError) as exc:
        err.print(f"[red]{escape(str(exc))}[/red]", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    plan = issue.plan
    if explain:
        for engineer in explain:
            typer.echo(explain_text(plan, engineer))
        raise typer.Exit(0)
    events, new = plan.events, issue.new
    try:
        sent, where = _deliver(new, settings, dry_run, output, err)
    except Exception as exc:  # PublishError, OSError
        err.print(f"[red]delivery failed (re-run is safe, ids are deterministic):[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_FAILED) from None
    issues = [e for e in new if isinstance(e, GrantIssued)]
    _summary(err, f"grants issue {plan.run_month.label}, policy {plan.policy} ({where})", [
        ("engineers", len({lp.line.engineer for lp in plan.lines})),
        ("lines (engineer x rule)", len(plan.lines)),
        ("lines with nothing to do", sum(1 for lp in plan.lines if not lp.actions)),
        ("grants " + ("to issue" if dry_run else "issued"), len(issues)),
        ("  of which adjustments", sum(1 for e in issues if e.kind.startswith("adjust:"))),
        ("  amount", usd(sum(e.amount_nanos for e in issues))),
        ("revocations", len(new) - len(issues)),
        ("already published", len(events) - len(new)),
        ("written" if dry_run or output else "delivered", sent),
    ])


def register(app: typer.Typer) -> None:
    app.add_typer(hr_app, name="hr")
    app.add_typer(grants_app, name="grants")
