"""`compstream replay`: balances from events, in any order, from one source:
JSON Lines files (`--input`), the Kafka source topics (`--from-kafka`), or the
ClickHouse history (`--from-history`, when topic data is gone)."""

from __future__ import annotations

import gc
import json
import os
import stat
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from compstream.domain.events import Event, EventError, parse_time
from compstream.replay import parallel as replay_parallel
from compstream.replay.file import SourceMap, balances_document, document_text, read_jsonl, replay_events

if TYPE_CHECKING:
    from compstream.domain.replay import ReplayResult
    from compstream.replay.late_decisions import Late
    from compstream.replay.sources import HistoryReplaySource, KafkaReplaySource

PROGRESS_MIN_BYTES = 8 << 20  # show a bar from 8 MiB of input
PROGRESS_MIN_RECORDS = 50_000  # ... or from this many Kafka/history records
SHOWN_PROBLEMS_MAX = 1000  # printed to stderr; --errors gets all of them
EXIT_STRICT = 1
EXIT_IO = 2
EXIT_WORKER = 3  # a --jobs worker died or failed; nothing written

# (kind, one-line text, JSON detail) of a bad line/message or conflict.
OnBad = Callable[[str, str, dict[str, Any]], None]
# A replay position -> (where, as text; where, as JSON fields).
Locate = Callable[[int], tuple[str, dict[str, Any]]]


def _write_atomic(path: str, text: str) -> None:
    """A regular file is written whole beside the target, then renamed over
    it. Anything else that exists (/dev/null, a FIFO) is written to, never
    replaced: renaming over /dev/null as root turned it into a file."""
    target = Path(path)
    try:
        regular = stat.S_ISREG(os.stat(target).st_mode)
    except OSError:  # not there yet (or unreadable: mkstemp below says why)
        regular = True
    if not regular:
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=str(target.parent or "."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _time_option(value: Optional[str], name: str) -> datetime | None:
    try:
        return None if value is None else parse_time(value, name)
    except EventError as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from exc


def _replay_files(inputs: list[Path], cutoff: datetime | None, on_bad: OnBad, progress: bool | None, err: Console,
                  jobs: int | None) -> tuple[ReplayResult, Locate]:
    try:
        total = sum(os.path.getsize(p) for p in inputs)
    except OSError as exc:
        err.print(f"cannot read input: {exc}", markup=False)
        raise typer.Exit(EXIT_IO) from exc
    show = progress if progress is not None else total >= PROGRESS_MIN_BYTES
    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TimeRemainingColumn(), console=err, disable=not show, transient=True)
    jobs = replay_parallel.auto_jobs(total) if jobs is None else min(jobs, replay_parallel.JOBS_MAX)
    if jobs > 1 and all(os.path.isfile(p) for p in inputs):  # every worker reads every file
        return _replay_files_parallel(inputs, cutoff, on_bad, bar, total, err, jobs)
    source_map = SourceMap()

    def on_bytes(n: int) -> None:  # called once per MiB read
        bar.advance(task, n)
        # Every event read stays alive until the fold, and each full garbage
        # collection would rescan all of them (~15% of a 1M-event replay).
        # Collect the young generations first, so only live objects are
        # frozen; unfrozen once the replay is done.
        gc.collect(1)
        gc.freeze()

    with bar:
        task = bar.add_task("replay", total=total)
        events = read_jsonl(inputs, lambda b: on_bad("bad line", str(b), b.to_dict()),
                            source_map=source_map, on_bytes=on_bytes)
        try:
            result = replay_events(events, cutoff)
        except OSError as exc:
            err.print(f"cannot read input: {exc}", markup=False)
            raise typer.Exit(EXIT_IO) from exc
        finally:
            gc.unfreeze()

    def locate(position: int) -> tuple[str, dict]:
        path, line = source_map.locate(position)
        return f"{path}:{line}", {"path": path, "line": line}
    return result, locate


def _replay_files_parallel(inputs: list[Path], cutoff: datetime | None, on_bad: OnBad, bar: Progress, total: int,
                           err: Console, jobs: int) -> tuple[ReplayResult, Locate]:
    """Same result and reports as the one-process path (replay_parallel)."""
    paths = [os.fspath(p) for p in inputs]
    try:
        with replay_parallel.Workers(paths, cutoff, jobs) as workers, bar:
            task = bar.add_task(f"replay ({jobs} jobs)", total=total)
            parts = workers.collect(lambda n: bar.advance(task, n))
    except replay_parallel.InputFailed as exc:
        err.print(f"cannot read input: {exc}", markup=False)
        raise typer.Exit(EXIT_IO) from exc
    except replay_parallel.WorkerFailed as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_WORKER) from exc
    merged = replay_parallel.merge(parts)
    for bad in merged.bad:
        on_bad("bad line", str(bad), bad.to_dict())

    def locate(position: int) -> tuple[str, dict]:
        path, line = merged.where[position]
        return f"{path}:{line}", {"path": path, "line": line}
    return merged.result, locate


def _keeping(events: Iterable[Event], kept: dict[str, list[Event]]) -> Iterator[Event]:
    """The events, passing on a copy of those of the engineers in `kept`."""
    for e in events:
        mine = kept.get(e.engineer_id)
        if mine is not None:
            mine.append(e)
        yield e


def _as_streamed(result: ReplayResult, kept: dict[str, list[Event]], late: Late, cutoff: datetime | None,
                 err: Console) -> None:
    """Engineers with late events: their balances as the stream applied them
    (replay/late_decisions.py), not sorted by event time."""
    from compstream.domain.as_streamed import LateDecisionError
    from compstream.domain.replay import ReplayResult, collect
    from compstream.replay.late_decisions import balance_as_streamed

    groups = collect((e for events in kept.values() for e in events), ReplayResult(balances={}))
    done = 0
    for engineer, events in groups.items():
        try:
            balance = balance_as_streamed(engineer, list(events.values()), late[engineer], cutoff)
        except LateDecisionError as exc:
            err.print(f"late decision not followed (the events contradict it): {exc}", markup=False)
            continue
        if engineer in result.balances:
            result.balances[engineer] = balance
            done += 1
    if done:
        err.print(f"{done} engineers with late events replayed as the stream applied them (each late event on top "
                  "of the state final when it arrived, as the worker recorded it); the others by event time",
                  markup=False)


def _replay_source(open_source: Callable[[], KafkaReplaySource | HistoryReplaySource], cutoff: datetime | None,
                   on_bad: OnBad, progress: bool | None, err: Console) -> tuple[ReplayResult, Locate]:
    """Kafka or history: both yield events with Kafka coordinates."""
    from compstream.replay.history_source import HistorySourceError
    from compstream.replay.kafka_source import SourceError

    try:
        source = open_source()
    except (SourceError, HistorySourceError) as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_IO) from exc
    try:
        show = progress if progress is not None else source.total >= PROGRESS_MIN_RECORDS
        bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), console=err, disable=not show, transient=True)
        with bar:
            task = bar.add_task(f"replay ({source.unit})", total=source.total)
            try:
                late = source.late()
                events = source.events(lambda b: on_bad("bad message", str(b), b.to_dict()),
                                       lambda n: bar.advance(task, n))
                kept: dict[str, list[Event]] = {engineer: [] for engineer in late}
                result = replay_events(_keeping(events, kept), cutoff)
            except (SourceError, HistorySourceError) as exc:
                err.print(str(exc), markup=False)
                raise typer.Exit(EXIT_IO) from exc
        _as_streamed(result, kept, late, cutoff, err)
    finally:
        source.close()

    def locate(position: int) -> tuple[str, dict]:
        topic, partition, offset = source.coords.locate(position)
        return (f"{topic}[{partition}]@{offset}",
                {"topic": topic, "partition": partition, "offset": offset})
    return result, locate


def replay_command(
    inputs: list[Path] = typer.Option(
        [], "--input", "-i", help="JSON Lines event log; repeat for more files."),
    from_kafka: bool = typer.Option(
        False, "--from-kafka", help="Read the usage + grants source topics of the configured broker."),
    from_history: bool = typer.Option(
        False, "--from-history", help="Read the ClickHouse history's events table (payload JSON)."),
    from_offset: list[str] = typer.Option(
        [], "--from-offset", help="With --from-kafka: first offset to read: N, P=N or TOPIC:P=N; repeatable."),
    to_offset: list[str] = typer.Option(
        [], "--to-offset", help="With --from-kafka: first offset NOT read (exclusive): N, P=N or TOPIC:P=N."),
    since: Optional[str] = typer.Option(
        None, "--since", help="With --from-kafka: records published at or after this RFC 3339 instant "
        "(Kafka record time, not event time)."),
    until: Optional[str] = typer.Option(
        None, "--until", help="With --from-kafka: records published before this instant."),
    as_of: Optional[str] = typer.Option(
        None, "--as-of", help="RFC 3339 instant; events and expiries at or before it. "
        "Omitted: everything, including every expiry."),
    output: str = typer.Option("-", "--output", "-o", help="Balances JSON file ('-' = stdout)."),
    strict: bool = typer.Option(
        False, "--strict", help="Exit non-zero (and write nothing) on any bad line/message or conflict."),
    errors: Optional[Path] = typer.Option(
        None, "--errors", help="Write every bad line/message and conflict here as JSON Lines."),
    progress: Optional[bool] = typer.Option(
        None, "--progress/--no-progress", help="Progress bar (default: on for large inputs)."),
    jobs: Optional[int] = typer.Option(
        None, "--jobs", "-j", min=1, help="With --input: worker processes, split by engineer; "
        f"capped at {replay_parallel.JOBS_MAX}. Default: one per CPU (up to "
        f"{replay_parallel.JOBS_MAX}) from {replay_parallel.AUTO_MIN_BYTES >> 20} MiB of input, "
        "else 1. Same output for every N; a pipe or other non-regular input means 1."),
) -> None:
    """Replay events (any order) and write per-engineer balances."""
    err = Console(stderr=True, soft_wrap=True)
    cutoff = _time_option(as_of, "--as-of")
    if sum((bool(inputs), from_kafka, from_history)) != 1:
        raise typer.BadParameter("give exactly one source: --input FILE..., --from-kafka or --from-history",
                                 param_hint="--input/--from-kafka/--from-history")
    if not from_kafka and (from_offset or to_offset or since or until):
        raise typer.BadParameter("--from-offset/--to-offset/--since/--until need --from-kafka")
    if jobs is not None and jobs > 1 and not inputs:
        raise typer.BadParameter("--jobs above 1 needs --input", param_hint="--jobs")

    problems: list[dict[str, Any]] = []
    shown = 0

    def report(kind: str, text: str, detail: dict[str, Any]) -> None:
        nonlocal shown
        problems.append({"kind": kind, **detail})
        if shown < SHOWN_PROBLEMS_MAX:
            err.print(f"[bold red]{escape(kind)}[/]: {escape(text)}", markup=True, highlight=False)
            shown += 1

    if inputs:
        result, locate = _replay_files(inputs, cutoff, report, progress, err, jobs)
        bad_kind = "bad line"
    else:
        from compstream.config import Settings
        from compstream.replay.sources import HistoryReplaySource, KafkaReplaySource

        settings = Settings.from_env()
        if from_kafka:
            from compstream.replay.kafka_source import parse_offset_specs
            try:
                starts, stops = parse_offset_specs(from_offset), parse_offset_specs(to_offset)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--from-offset/--to-offset") from exc
            window = (_time_option(since, "--since"), _time_option(until, "--until"))
            opener: Callable[[], Any] = lambda: KafkaReplaySource(settings, from_offsets=starts, to_offsets=stops,  # noqa: E731
                                               since=window[0], until=window[1])
        else:
            opener = lambda: HistoryReplaySource(settings)  # noqa: E731
        result, locate = _replay_source(opener, cutoff, report, progress, err)
        bad_kind = "bad message"

    for rep in result.reports:
        if rep.code == "conflict" and rep.position is not None:
            where, coords = locate(rep.position)
            report("conflict", f"{where}: event_id {rep.event_id!r} "
                   f"(engineer {rep.engineer_id!r}) {rep.detail}",
                   {**coords, "event_id": rep.event_id,
                    "engineer_id": rep.engineer_id, "reason": rep.detail})
        else:
            report(rep.code, f"engineer {rep.engineer_id!r} event {rep.event_id!r}: {rep.detail}",
                   {"event_id": rep.event_id, "engineer_id": rep.engineer_id,
                    "reason": rep.detail})
    if shown < len(problems):
        err.print(f"... {len(problems) - shown} more not shown"
                  + (f" (all in {errors})" if errors else " (use --errors FILE for all)"),
                  markup=False)
    if errors is not None:
        _write_atomic(str(errors), "".join(json.dumps(p) + "\n" for p in problems))

    bad = sum(1 for p in problems if p["kind"] in (bad_kind, "conflict"))
    err.print(
        f"{result.events_in} events read, {result.duplicates} duplicates ignored, "
        f"{result.conflicts} conflicts rejected, {bad - result.conflicts} {bad_kind}s, "
        f"{len(result.balances)} engineers", markup=False, highlight=False)
    if strict and bad:
        err.print(f"--strict: {bad} {bad_kind}s or conflicts; no output written", markup=False)
        raise typer.Exit(EXIT_STRICT)

    text = document_text(balances_document(result, cutoff))
    if output == "-":
        sys.stdout.write(text)
    else:
        _write_atomic(output, text)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_command)
