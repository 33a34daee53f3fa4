"""`compstream ingest <source> FILE...`: provider exports -> usage topic.

Sources: openai, openai-costs, anthropic, claude-code, gcp, jsonl (`-` reads
stdin). `--dry-run` and `--output` write canonical JSON Lines instead of
producing to Kafka. `compstream ingest reprice` prices journal rows that were
unpriced (e.g. after a genai-prices upgrade) and sends the corrections.
`compstream ingest rebuild-journal` recreates the journal from the usage
topic; an ingest to Kafka does that by itself when its journal is empty and
the topic is not (ingest/topic_journal.py).

Exit codes: 0 all rows accepted; 1 some rows rejected (the rest was
delivered unless --strict); 2 unusable input/config/journal or a failed
delivery (nothing committed to the journal, re-run is safe).
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Iterable, Iterator, Optional, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn
from rich.table import Table

from compstream.config import Settings
from compstream.domain.events import Usage
from compstream.ingest import ADAPTERS
from compstream.ingest.identity import IdentityConfigError, IdentityMap
from compstream.ingest.journal import Journal
from compstream.ingest.jsonio import display_name, read_text
from compstream.ingest.model import AdapterItem, IngestError, Location, Rejection
from compstream.ingest.pipeline import Converter, Summary, reprice
from compstream.ingest.pricing import format_nanos
from compstream.ingest.publish import PublishError, publish, write_jsonl
from compstream.ingest.topic_journal import (
    SourceError,
    TopicRebuild,
    marker_headers,
    rebuild_from_topic,
    topic_has_records,
)

EXIT_REJECTED = 1
EXIT_FAILED = 2
SHOWN_REJECTIONS_MAX = 50

ingest_app = typer.Typer(
    name="ingest",
    help="Ingest provider usage exports as priced, attributed usage events.",
    no_args_is_help=True,
)


def _items(source: str, files: list[str], bar: tuple[Progress, TaskID] | None) -> Iterator[AdapterItem]:
    adapter = ADAPTERS[source]
    for path in files:
        name = display_name(path)
        if bar is not None:
            progress, task = bar
            progress.update(task, description=f"[cyan]{name}")
        try:
            text = read_text(path)
        except IngestError as exc:
            yield Rejection(Location(name), str(exc).removeprefix(f"{name}: "))
        else:
            yield from adapter(text, name)
        if bar is not None:
            progress.advance(task)


def _print_summary(err: Console, summary: Summary, delivered: str) -> None:
    table = Table(title=f"ingest summary ({delivered})", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("rows read", summary.rows_read),
        ("events produced", summary.events),
        ("  originals", summary.originals),
        ("  corrections", summary.corrections),
        ("unchanged (already ingested)", summary.unchanged),
        ("stale (older export)", summary.stale),
        ("skipped (not usage / superseded)", summary.skipped),
        ("rejected", summary.rejected),
        ("unattributed", summary.unattributed),
        ("unpriced", summary.unpriced),
        ("cost total", format_nanos(summary.cost_nanos)),
    ):
        table.add_row(label, str(value))
    err.print(table)
    for reason, count in summary.skipped_reasons.most_common(5):
        err.print(f"[dim]skipped {count}x: {reason}[/dim]")
    for rejection in summary.rejections[:SHOWN_REJECTIONS_MAX]:
        err.print(f"[red]rejected[/red] {rejection.location}: {rejection.reason}", markup=True, highlight=False)
    if summary.rejected > SHOWN_REJECTIONS_MAX:
        err.print(f"[red]... and {summary.rejected - SHOWN_REJECTIONS_MAX} more rejected rows[/red]")


def _deliver(
    events: Iterable[Usage], dry_run: bool, output: Optional[str], settings: Settings, topic: Optional[str],
    journal: Journal | None = None,
) -> tuple[Iterator[Usage], ExitStack, str]:
    stack = ExitStack()
    if dry_run or output:
        handle: TextIO
        if output and output != "-":
            handle = stack.enter_context(open(output, "w", encoding="utf-8"))
            where = output
        else:
            handle = sys.stdout
            where = "stdout"
        return write_jsonl(events, handle), stack, f"{'dry run, ' if dry_run else ''}JSONL to {where}"
    target = topic or settings.topics.usage
    headers = marker_headers(journal) if journal is not None else None
    return (publish(events, settings.kafka_bootstrap, target, headers=headers), stack,
            f"Kafka {settings.kafka_bootstrap} topic {target}")


def _describe_rebuild(result: TopicRebuild, topic: str) -> str:
    s = result.stats
    text = (f"journal rebuilt from {topic}: {s.rows} rows from {s.events} usage events "
            f"({result.records} records read")
    extras = [f"{count} {what}" for count, what in (
        (s.duplicates, "repeated ids skipped"), (result.bad, "not decodable (dead letters)"),
        (result.not_usage, "not usage")) if count]
    return text + (", " + ", ".join(extras) if extras else "") + ")"


def _rebuild(journal: Journal, bootstrap: str, topic: str, err: Console) -> bool:
    """Rebuild the journal from `topic` and commit; on failure roll back, say why, False."""
    try:
        result = rebuild_from_topic(journal, bootstrap, topic)
    except Exception as exc:  # SourceError, IngestError, kafka-python's own (unreachable broker)
        journal.rollback()
        reason = str(exc) if isinstance(exc, (SourceError, IngestError)) else repr(exc)
        err.print(f"[red]journal rebuild from {topic} failed, journal unchanged:[/red] {reason}",
                  highlight=False, soft_wrap=True)
        return False
    journal.commit()  # derived state: kept even if the delivery that follows fails
    err.print(_describe_rebuild(result, topic), highlight=False, soft_wrap=True)
    return True


def _journal_for_kafka(journal: Journal, settings: Settings, topic: Optional[str], rebuild: bool, err: Console) -> bool:
    """Before delivering to Kafka: an empty journal over a non-empty usage topic
    is rebuilt (or, with rebuild off, warned about). False: could not check."""
    if journal.count():
        return True
    target = topic or settings.topics.usage
    try:
        has_records = topic_has_records(settings.kafka_bootstrap, target)
    except Exception as exc:  # unreachable broker: the delivery would fail too
        err.print(f"[red]journal is empty and {target} could not be checked:[/red] {exc!r}", highlight=False)
        return False
    if not has_records:
        return True
    if rebuild:
        return _rebuild(journal, settings.kafka_bootstrap, target, err)
    err.print(f"[yellow]warning:[/yellow] the ingest journal {journal.path} is empty but {target} is not: "
              "rows ingested before and restated since will be re-sent as originals with other numbers "
              "(the worker's conflict dead letters). Run `compstream ingest rebuild-journal` first.",
              highlight=False, soft_wrap=True)
    return True


def run_ingest(
    source: str,
    files: list[str],
    identity: Optional[Path] = None,
    dry_run: bool = False,
    output: Optional[str] = None,
    strict: bool = False,
    journal_path: Optional[Path] = None,
    topic: Optional[str] = None,
    console: Console | None = None,
    journal_rebuild: bool = True,
) -> int:
    err = console or Console(stderr=True)
    settings = Settings.from_env()
    if not files:
        err.print("[red]no input files[/red]")
        return EXIT_FAILED
    if files.count("-") > 1:
        err.print("[red]stdin ('-') can be read only once[/red]")
        return EXIT_FAILED
    try:
        id_map = IdentityMap.load(identity) if identity else IdentityMap.empty()
    except IdentityConfigError as exc:
        err.print(f"[red]identity map:[/red] {exc}")
        return EXIT_FAILED
    if strict:
        if "-" in files:
            err.print("[red]--strict needs a second pass and cannot read stdin[/red]")
            return EXIT_FAILED
        bad = [item for item in _items(source, files, None) if isinstance(item, Rejection)]
        if bad:
            for rejection in bad[:SHOWN_REJECTIONS_MAX]:
                err.print(f"[red]rejected[/red] {rejection}", highlight=False)
            err.print(f"[red]--strict: {len(bad)} rejected rows; nothing ingested[/red]")
            return EXIT_REJECTED
    try:
        journal = Journal(journal_path) if journal_path else Journal.in_data_dir(settings.data_dir)
    except IngestError as exc:
        err.print(f"[red]journal:[/red] {exc}")
        return EXIT_FAILED
    with journal:
        to_kafka = not (dry_run or output)
        if to_kafka and not _journal_for_kafka(journal, settings, topic, journal_rebuild, err):
            return EXIT_FAILED
        converter = Converter(journal, id_map)
        progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("rows {task.fields[rows]} events {task.fields[events]}"),
            console=err, transient=True,
        )
        task = progress.add_task("ingest", total=len(files), rows=0, events=0)
        try:
            with progress:
                events = converter.convert(_items(source, files, (progress, task)))
                delivered_iter, stack, where = _deliver(events, dry_run, output, settings, topic, journal)
                with stack:
                    for _ in delivered_iter:
                        progress.update(task, rows=converter.summary.rows_read, events=converter.summary.events)
        except (PublishError, IngestError, OSError) as exc:
            journal.rollback()
            err.print(f"[red]delivery failed, journal not updated (re-run is safe):[/red] {exc}")
            _print_summary(err, converter.summary, "FAILED")
            return EXIT_FAILED
        if dry_run:
            journal.rollback()
        else:
            journal.commit()
        _print_summary(err, converter.summary, where)
    return EXIT_REJECTED if converter.summary.rejected else 0


def _make_source_command(source: str, help_text: str) -> None:
    def command(
        files: list[str] = typer.Argument(..., help="Export files ('-' = stdin)."),
        identity: Optional[Path] = typer.Option(None, "--identity", help="Identity map (TOML or JSON, versioned)."),
        dry_run: bool = typer.Option(False, "--dry-run",
                                     help="Write canonical JSONL (stdout or --output); journal untouched."),
        output: Optional[str] = typer.Option(None, "--output", "-o",
                                             help="Write canonical JSONL here instead of Kafka."),
        strict: bool = typer.Option(False, "--strict", help="Ingest nothing if any row is rejected."),
        journal_path: Optional[Path] = typer.Option(None, "--journal", help="Ingest journal (default: data dir)."),
        topic: Optional[str] = typer.Option(None, "--topic", help="Override the usage topic."),
        journal_rebuild: bool = typer.Option(
            True, "--journal-rebuild/--no-journal-rebuild",
            help="An empty journal over a non-empty usage topic: rebuild it from the topic first (off: only warn)."),
    ) -> None:
        code = run_ingest(source, files, identity, dry_run, output, strict, journal_path, topic,
                          journal_rebuild=journal_rebuild)
        raise typer.Exit(code)

    command.__doc__ = help_text
    ingest_app.command(name=source)(command)


_HELP = {
    "openai": "OpenAI organization Usage API (completions) pages.",
    "openai-costs": "OpenAI organization Costs API pages (provider-reported cost, per project).",
    "anthropic": "Anthropic Admin API usage_report/messages pages.",
    "claude-code": "Anthropic Claude Code usage report pages (estimated_cost used).",
    "gcp": "Google Cloud Billing export rows (CSV or JSON) for Gemini / Vertex AI.",
    "jsonl": "Canonical usage events as JSON Lines.",
}
for _source in ADAPTERS:
    _make_source_command(_source, _HELP[_source])


@ingest_app.command("reprice")
def reprice_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="Write the corrections as JSONL; journal untouched."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write canonical JSONL here instead of Kafka."),
    journal_path: Optional[Path] = typer.Option(None, "--journal", help="Ingest journal (default: data dir)."),
    topic: Optional[str] = typer.Option(None, "--topic", help="Override the usage topic."),
) -> None:
    """Price journal rows that were unpriced and send cost corrections."""
    err = Console(stderr=True)
    settings = Settings.from_env()
    try:
        journal = Journal(journal_path) if journal_path else Journal.in_data_dir(settings.data_dir)
    except IngestError as exc:
        err.print(f"[red]journal:[/red] {exc}")
        raise typer.Exit(EXIT_FAILED) from exc
    summary = Summary()
    with journal:
        # A new host's empty journal has nothing to reprice until it is rebuilt.
        if not (dry_run or output) and not _journal_for_kafka(journal, settings, topic, True, err):
            raise typer.Exit(EXIT_FAILED)
        try:
            delivered_iter, stack, where = _deliver(reprice(journal, summary=summary), dry_run, output, settings, topic,
                                                    journal)
            with stack:
                for _ in delivered_iter:
                    pass
        except (PublishError, OSError) as exc:
            journal.rollback()
            err.print(f"[red]delivery failed, journal not updated:[/red] {exc}")
            raise typer.Exit(EXIT_FAILED) from exc
        if dry_run:
            journal.rollback()
        else:
            journal.commit()
    _print_summary(err, summary, where)


@ingest_app.command("rebuild-journal")
def rebuild_journal_command(
    journal_path: Optional[Path] = typer.Option(None, "--journal", help="Ingest journal (default: data dir)."),
    topic: Optional[str] = typer.Option(None, "--topic", help="Override the usage topic."),
    force: bool = typer.Option(False, "--force", help="Replace a journal that has rows."),
) -> None:
    """Recreate the ingest journal from the usage topic (new host, wiped data dir)."""
    err = Console(stderr=True)
    settings = Settings.from_env()
    target = topic or settings.topics.usage
    try:
        journal = Journal(journal_path) if journal_path else Journal.in_data_dir(settings.data_dir)
    except IngestError as exc:
        err.print(f"[red]journal:[/red] {exc}")
        raise typer.Exit(EXIT_FAILED) from exc
    with journal:
        rows = journal.count()
        if rows and not force:
            err.print(f"[red]{journal.path} has {rows} rows; a rebuild replaces them (fingerprints and identity keys "
                      "are not on the topic): pass --force[/red]", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_FAILED)
        if not _rebuild(journal, settings.kafka_bootstrap, target, err):
            raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")
