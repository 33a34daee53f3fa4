"""`compstream replay`: balances from JSON Lines event logs, in any order."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from compstream.domain.events import EventError, parse_time
from compstream.replay_file import (
    BadLine, SourceMap, balances_document, read_jsonl, replay_events,
)

PROGRESS_MIN_BYTES = 8 << 20  # show a bar from 8 MiB of input
SHOWN_PROBLEMS_MAX = 1000  # printed to stderr; --errors gets all of them
EXIT_STRICT = 1
EXIT_IO = 2


def _write_atomic(path: str, text: str) -> None:
    target = Path(path)
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


def replay_command(
    inputs: list[Path] = typer.Option(
        ..., "--input", "-i", help="JSON Lines event log; repeat for more files."),
    as_of: Optional[str] = typer.Option(
        None, "--as-of", help="RFC 3339 instant; events and expiries at or before it. "
        "Omitted: everything, including every expiry."),
    output: str = typer.Option("-", "--output", "-o", help="Balances JSON file ('-' = stdout)."),
    strict: bool = typer.Option(
        False, "--strict", help="Exit non-zero (and write nothing) on any bad line or conflict."),
    errors: Optional[Path] = typer.Option(
        None, "--errors", help="Write every bad line and conflict here as JSON Lines."),
    progress: Optional[bool] = typer.Option(
        None, "--progress/--no-progress", help="Progress bar (default: on for large inputs)."),
) -> None:
    """Replay event logs (any order) and write per-engineer balances."""
    err = Console(stderr=True, soft_wrap=True)
    try:
        cutoff = None if as_of is None else parse_time(as_of, "--as-of")
    except EventError as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-of") from exc

    problems: list[dict[str, Any]] = []
    shown = 0

    def report(kind: str, text: str, detail: dict[str, Any]) -> None:
        nonlocal shown
        problems.append({"kind": kind, **detail})
        if shown < SHOWN_PROBLEMS_MAX:
            err.print(f"[bold red]{escape(kind)}[/]: {escape(text)}", markup=True, highlight=False)
            shown += 1

    def on_bad(bad: BadLine) -> None:
        report("bad line", str(bad), bad.to_dict())

    try:
        total = sum(os.path.getsize(p) for p in inputs)
    except OSError as exc:
        err.print(f"cannot read input: {exc}", markup=False)
        raise typer.Exit(EXIT_IO)
    show = progress if progress is not None else total >= PROGRESS_MIN_BYTES
    source_map = SourceMap()
    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TimeRemainingColumn(), console=err, disable=not show, transient=True)
    with bar:
        task = bar.add_task("replay", total=total)
        events = read_jsonl(inputs, on_bad, source_map=source_map,
                            on_bytes=lambda n: bar.advance(task, n))
        try:
            result = replay_events(events, cutoff)
        except OSError as exc:
            err.print(f"cannot read input: {exc}", markup=False)
            raise typer.Exit(EXIT_IO)

    for rep in result.reports:
        if rep.code == "conflict" and rep.position is not None:
            path, line = source_map.locate(rep.position)
            report("conflict", f"{path}:{line}: event_id {rep.event_id!r} "
                   f"(engineer {rep.engineer_id!r}) {rep.detail}",
                   {"path": path, "line": line, "event_id": rep.event_id,
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

    bad = sum(1 for p in problems if p["kind"] in ("bad line", "conflict"))
    err.print(
        f"{result.events_in} events read, {result.duplicates} duplicates ignored, "
        f"{result.conflicts} conflicts rejected, {bad - result.conflicts} bad lines, "
        f"{len(result.balances)} engineers", markup=False, highlight=False)
    if strict and bad:
        err.print(f"--strict: {bad} bad lines or conflicts; no output written", markup=False)
        raise typer.Exit(EXIT_STRICT)

    text = json.dumps(balances_document(result, cutoff), indent=2) + "\n"
    if output == "-":
        sys.stdout.write(text)
    else:
        _write_atomic(output, text)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_command)
