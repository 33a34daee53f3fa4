"""SRE commands: `compstream diff`, `compstream rebuild`, `compstream dlq ...`.

Exit codes: 0 ok/equal, 1 differences (or refused at a prompt), 2 cannot
proceed (broker unreachable, worker running, bad arguments), 3 timed out.
See docs/runbook.md for when to use which.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from compstream.config import Settings

if TYPE_CHECKING:
    from kafka import TopicPartition

    from compstream.ops.diff import DiffResult
    from compstream.ops.dlq import DeadLetterEntry

P = ParamSpec("P")
R = TypeVar("R")

EXIT_DIFF = 1
EXIT_CANNOT = 2
EXIT_TIMEOUT = 3
SHOWN_ROWS_MAX = 200

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
dlq_app = typer.Typer(help="Dead letters: list, show, redrive.", no_args_is_help=True)


def _fail(message: str, code: int = EXIT_CANNOT) -> typer.Exit:
    err.print(message, markup=False, highlight=False)
    return typer.Exit(code)


def _print_diff(result: DiffResult, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps({
            "equal": result.equal, "engineers_live": result.engineers_live,
            "engineers_replay": result.engineers_replay, "events": result.events,
            "bad_messages": result.bad_count, "refused_too_old": result.refused_too_old,
            "refused_book_full": result.refused_book_full, "refused_future": result.refused_future,
            "late_engineers": result.late_engineers, "late_events": result.late_events,
            "differences": [d.to_dict() for d in result.differences],
            "rejudged_engineers": result.rejudged_engineers,
            "statement_differences": [d.to_dict() for d in result.statement_differences]}))
        return
    if result.differences:
        table = Table("engineer", "field", "live", "replay", "replay - live", title="differences")
        for d in result.differences[:SHOWN_ROWS_MAX]:
            delta = d.replay - d.live if isinstance(d.live, int) and isinstance(d.replay, int) else ""
            table.add_row(escape(d.engineer_id), d.field, escape(str(d.live)), escape(str(d.replay)), str(delta))
        out.print(table)
        if len(result.differences) > SHOWN_ROWS_MAX:
            out.print(f"... {len(result.differences) - SHOWN_ROWS_MAX} more (use --json for all)")
    if result.bad_count:
        err.print(f"{result.bad_count} source records are not events (dead letters of the worker too); "
                  "see `compstream dlq list`", markup=False)
    if result.refused_too_old:
        err.print(f"{result.refused_too_old} source records left out of the replay: the worker refused them "
                  "as too old to check for duplicates (dead letters, stage too_old)", markup=False)
    if result.refused_book_full:
        err.print(f"{result.refused_book_full} source records left out of the replay: the worker refused them "
                  "for lack of room in the engineer's book (dead letters, stage book_full)", markup=False)
    if result.refused_future:
        err.print(f"{result.refused_future} source records left out of the replay: the worker refused them "
                  "as usage dated too far ahead of its record (dead letters, stage future)", markup=False)
    if result.late_engineers:
        err.print(f"{result.late_engineers} engineers with {result.late_events} late events replayed as the "
                  "stream applied them (each late event on top of the state final at its arrival, as the "
                  "history topic records it), the others sorted by event time", markup=False)
    if result.statement_differences:
        table = Table("engineer", "field", "live", "by history's first decisions",
                      title="balances that differ from their statements (late events judged again)")
        for d in result.statement_differences[:SHOWN_ROWS_MAX]:
            table.add_row(escape(d.engineer_id), d.field, escape(str(d.live)), escape(str(d.replay)))
        out.print(table)
    if result.rejudged_engineers:
        differing = len({d.engineer_id for d in result.statement_differences})
        err.print(f"{result.rejudged_engineers} engineers' late events were judged again (the history topic's "
                  f"last rows differ from its first, which the history store keeps): for {differing} of them the "
                  "live balance now differs from what history's postings, statements and `audit verify` "
                  "show (docs/runbook.md, scenario 8)", markup=False)
    elif result.rejudged_engineers is None:
        err.print("late decisions judged again: not checked (more history rows than "
                  "late_decisions.FIRST_SEEN_MAX)", markup=False)
    verdict = "equal" if result.equal else f"{len(result.differences)} differences"
    err.print(f"{result.engineers_live} live balances, {result.engineers_replay} engineers replayed "
              f"from {result.events} events, {result.conflicts} conflicts: {verdict}", markup=False)


def _diff_until_equal(settings: Settings, as_of_latest: bool, settle_s: float) -> DiffResult:
    """Balances trail committed offsets by a moment (producer buffers): retry
    a differing result until `settle_s` has passed."""
    from compstream.ops.diff import run_diff
    from compstream.replay.kafka_source import SourceError

    deadline = time.monotonic() + settle_s
    while True:
        try:
            result = run_diff(settings, as_of_latest=as_of_latest)
        except SourceError as exc:
            raise _fail(str(exc)) from exc
        if result.equal or time.monotonic() >= deadline:
            return result
        time.sleep(2.0)


def diff_command(
    as_of_latest: bool = typer.Option(False, "--as-of-latest", help="Replay everyone as of the latest "
                                      "event time on the source topics, not each record's as_of."),
    settle: float = typer.Option(0.0, "--settle", help="Retry a differing result for up to this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Compare live balances with a fresh replay of the source topics; exit 1 on any difference."""
    result = _diff_until_equal(Settings.from_env(), as_of_latest, settle)
    _print_diff(result, as_json)
    if not result.equal:
        raise typer.Exit(EXIT_DIFF)


def rebuild_command(
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    stop: bool = typer.Option(False, "--stop", help="SIGTERM this data dir's running worker and wait."),
    start: bool = typer.Option(
        False, "--start", help="Start a detached worker afterwards (log: <data dir>/worker.log)."),
    wait: Optional[bool] = typer.Option(
        None, "--wait/--no-wait", help="Follow the catch-up and diff (default: with --start)."),
    timeout: float = typer.Option(900.0, "--timeout", help="Seconds to wait for the catch-up."),
    settle: float = typer.Option(30.0, "--settle", help="Seconds the final diff may retry."),
) -> None:
    """Rebuild the worker's books from the source topics (group offsets, changelogs, local state)."""
    from kafka.errors import KafkaError

    from compstream.ops import rebuild as rb
    from compstream.replay.kafka_source import SourceError
    from compstream.worker import recorded_late

    settings = Settings.from_env()
    wait = start if wait is None else wait
    try:
        pid = rb.live_worker(settings)
        if pid is not None and not stop:
            raise _fail(f"the worker (pid {pid}) runs on {settings.data_dir}; stop it or pass --stop")
        changelogs = rb.changelog_topics(settings)
        err.print(f"rebuild of worker {settings.worker_id!r} on {settings.kafka_bootstrap}:\n"
                  f"  stop worker: {pid if pid is not None else 'none running'}\n"
                  f"  delete consumer group: {settings.worker_id}\n"
                  f"  delete topics: {', '.join(changelogs) or 'none'}\n"
                  f"  keep the stream's decisions from history: {settings.data_dir / 'recorded-late.json'}\n"
                  f"  wipe: {settings.data_dir / 'worker'}\n"
                  f"  then: {'start a worker' if start else 'leave stopped'}"
                  f"{', wait for catch-up and diff' if wait else ''}", markup=False)
        if not yes and not typer.confirm("Proceed?"):
            raise typer.Exit(EXIT_DIFF)
        began = time.monotonic()

        def step(text: str) -> None:
            err.print(f"[{time.monotonic() - began:6.1f}s] {text}", markup=False, highlight=False)
        if pid is not None:
            rb.stop_worker(pid, timeout_s=60)
            step(f"worker {pid} stopped")
        # Before anything is deleted: a history topic that cannot be read stops the rebuild here.
        step(f"the stream's decisions kept for the rebuilt books: {rb.keep_decisions(settings)}")
        step(f"consumer group {rb.delete_group(settings, timeout_s=2 * settings.session_timeout_s + 10)}")
        rb.delete_topics_and_wait(settings, changelogs, timeout_s=60)
        step(f"{len(changelogs)} changelog topics deleted; wiped {rb.wipe_local(settings)}")
        target = rb.end_offsets(settings)
        started = rb.start_worker(settings) if start else None
    except (rb.RebuildError, SourceError, KafkaError) as exc:
        raise _fail(f"rebuild stopped: {exc}") from exc
    if started is not None:
        err.print(f"worker started (pid {started}, log {settings.data_dir / 'worker.log'})", markup=False)
    if not wait:
        err.print("state reset; the next `compstream worker` rebuilds from the earliest offsets", markup=False)
        return
    _follow(settings, target, started, timeout)
    # Every decision and place lies below the target offsets: applied and committed now.
    taken = recorded_late.retire(settings.data_dir)
    step(f"caught up; the stream's decisions are all taken{f' (file moved to {taken})' if taken else ''}; "
         "final diff")
    result = _diff_until_equal(settings, False, settle)
    _print_diff(result, as_json=False)
    if not result.equal:
        raise typer.Exit(EXIT_DIFF)
    if result.statement_differences:
        # The rebuilt books are right by their own decisions, but the balance
        # topic now disagrees with history for these engineers: say so loudly.
        err.print("rebuild: balances equal the replay by the rebuilt books' decisions, but "
                  f"{len({d.engineer_id for d in result.statement_differences})} engineers' balances now "
                  "differ from their statements (above)", markup=False)
        raise typer.Exit(EXIT_DIFF)


def _follow(settings: Settings, target: dict[TopicPartition, tuple[int, int]], started: int | None,
            timeout_s: float) -> None:
    from compstream.ops import rebuild as rb
    from compstream.processes import pid_alive

    deadline = time.monotonic() + timeout_s
    bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=err, transient=True)
    with bar:
        task = bar.add_task("catching up", total=sum(e - b for b, e in target.values()))
        while True:
            state = rb.catch_up(settings, target)
            bar.update(task, completed=state.done)
            if state.complete:
                break
            if started is not None and not pid_alive(started):
                raise _fail(f"the worker (pid {started}) exited; see {settings.data_dir / 'worker.log'}")
            if time.monotonic() > deadline:
                raise _fail(f"not caught up after {timeout_s:.0f}s ({state.done}/{state.total}); "
                            f"behind: {', '.join(state.behind[:8])}", EXIT_TIMEOUT)
            time.sleep(1.0)
    err.print(f"caught up: {state.total} source records", markup=False)


def _dead_letters(settings: Settings) -> tuple[list[DeadLetterEntry], dict[str, dict]]:
    from compstream.ops.dlq import marker_topic, read_dead_letters, read_markers
    from compstream.replay.kafka_source import open_consumer

    consumer = open_consumer(settings.kafka_bootstrap)
    try:
        return (read_dead_letters(consumer, settings.topics.dead_letters),
                read_markers(consumer, marker_topic(settings.topics)))
    finally:
        consumer.close()


def _guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """dlq commands: a known failure is a message and exit 2, not a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from compstream.ops.dlq import DlqError
        from compstream.replay.kafka_source import SourceError
        try:
            return fn(*args, **kwargs)
        except (DlqError, SourceError, OSError) as exc:
            raise _fail(str(exc)) from exc
    return wrapper


@dlq_app.command("list")
@_guarded
def dlq_list(
    stage: Optional[str] = typer.Option(None, "--stage", help="Only this stage (e.g. decode:framing, conflict)."),
    limit: int = typer.Option(100, "--limit", help="Rows shown (0 = all)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Dead letters: id (P:O), source, stage, reason, size, redriven."""
    entries, markers = _dead_letters(Settings.from_env())
    rows = [e for e in entries if stage is None or (e.record or {}).get("stage") == stage]
    shown = rows if limit <= 0 else rows[:limit]
    if as_json:
        for e in shown:
            r = e.record or {}
            out.print(json.dumps({"id": e.id, "source": e.source_id, "stage": r.get("stage"),
                                  "reason": r.get("reason", e.error), "size": e.size,
                                  "redriven": markers.get(e.source_id or "", {}).get("target")}),
                      markup=False, highlight=False, soft_wrap=True)
        return
    table = Table("id", "source", "stage", "reason", "size", "redriven", title="dead letters")
    for e in shown:
        r = e.record or {}
        table.add_row(e.id, escape(e.source_id or "?"), escape(r.get("stage", "unreadable")),
                      escape(str(r.get("reason", e.error))[:80]), str(e.size),
                      escape(markers.get(e.source_id or "", {}).get("target", "")))
    out.print(table)
    err.print(f"{len(rows)} dead letters" + (f" ({len(shown)} shown)" if len(shown) < len(rows) else ""),
              markup=False)


@dlq_app.command("show")
@_guarded
def dlq_show(ident: str = typer.Argument(..., help="P:O (or O if unambiguous) from `dlq list`."),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Raw bytes (hex and UTF-8 preview) and a decode attempt of one dead letter."""
    from compstream.ops.dlq import find, preview

    entries, markers = _dead_letters(Settings.from_env())
    entry = find(entries, ident)
    info = preview(entry)
    info["redriven"] = markers.get(entry.source_id or "")
    if as_json:
        out.print_json(json.dumps(info))
        return
    for name in ("id", "source", "stage", "reason", "key", "received_at", "size", "redriven", "error"):
        if name in info:
            out.print(f"[bold]{name}[/]: {escape(str(info[name]))}")
    if "hex" in info:
        out.print("[bold]hex[/]" + (" (truncated)" if info["truncated"] else "") + ":")
        out.print(info["hex"], markup=False, highlight=False)
        out.print("[bold]utf-8[/]:")
        out.print(repr(info["utf8"]), markup=False, highlight=False)
        out.print("[bold]decoded[/]:")
        out.print_json(json.dumps(info["decoded"]))


@dlq_app.command("redrive")
@_guarded
def dlq_redrive(
    ids: list[str] = typer.Argument(None, help="Dead letters (P:O) to redrive unchanged."),
    all_: bool = typer.Option(False, "--all", help="Every dead letter (with --stage: of that stage)."),
    stage: Optional[str] = typer.Option(None, "--stage"),
    fixed: Optional[Path] = typer.Option(None, "--fixed", help='JSONL of {"offset": "P:O", "event": {...}}: '
                                         "publish these corrected events instead."),
    force: bool = typer.Option(False, "--force", help="Also redrive marked (already redriven) and conflicts."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan only."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Re-publish dead letters to their source topic, once per source record."""
    from compstream.ops import dlq

    settings = Settings.from_env()
    entries, markers = _dead_letters(settings)
    fixes = dlq.load_fixed(fixed, entries) if fixed is not None else {}
    selected = [dlq.find(entries, i) for i in ids or []]
    selected += [dlq.find(entries, i) for i in fixes]
    if all_:
        selected += [e for e in entries if stage is None or (e.record or {}).get("stage") == stage]
    selected = list({e.id: e for e in selected}.values())
    if not selected:
        raise _fail("nothing selected: give dead letter ids, --fixed FILE or --all")
    todo, skipped = dlq.plan(entries, markers, settings.topics, selected=selected, fixed=fixes, force=force)
    for entry, why in skipped:
        err.print(f"skip {entry.id} ({entry.source_id}): {why}", markup=False)
    for item in todo:
        err.print(f"redrive {item.entry.id} ({item.entry.source_id}, {item.mode}) -> {item.topic}", markup=False)
    if dry_run or not todo:
        err.print(f"{len(todo)} to redrive, {len(skipped)} skipped" + (" (dry run)" if dry_run else ""),
                  markup=False)
        return
    if not yes and not typer.confirm(f"Redrive {len(todo)}?"):
        raise typer.Exit(EXIT_DIFF)
    targets = dlq.execute(todo, settings.kafka_bootstrap, dlq.marker_topic(settings.topics),
                          settings.topics.dead_letters)
    for item, target in zip(todo, targets, strict=False):
        out.print(f"{item.entry.id} -> {target}", markup=False, highlight=False)
    err.print(f"{len(targets)} redriven, {len(skipped)} skipped", markup=False)


def register(app: typer.Typer) -> None:
    app.command("diff")(diff_command)
    app.command("rebuild")(rebuild_command)
    app.add_typer(dlq_app, name="dlq")
