"""`compstream replay --jobs N` for JSON Lines files: N forked workers.

Deduplication and the fold are per engineer (domain/replay.py), so worker w
of N owns the engineers with `crc32(utf-8 engineer_id) % N == w` and nothing
it computes depends on another worker's events. Every worker reads every
line but fully parses only its own: the engineer id is taken from the raw
bytes when that is certain (see `read_part`), else the line is parsed and
kept if the parsed event's engineer is owned. A bad line is reported once:
by its owner when routed from the bytes, by worker 0 when every worker
parsed it. Inputs must be regular files (every worker reads all of them).

The parent merges the results (small: balances and reports, pickled over a
pipe) into what the one-process replay gives: the same counts, balances,
bad lines in input order, conflicts in input order and ledger reports in
engineer order. A worker that dies or fails makes `Workers.collect` raise;
nothing partial is ever returned.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing.connection import wait
from typing import Any, Callable, Iterator, Sequence
from zlib import crc32

from compstream.domain.events import Event, EventError
from compstream.domain.replay import ReplayResult
from compstream.replay.file import BadLine, SourceMap, parse_line_reference, replay_events
from compstream.replay.jsonl_fast import line_event

JOBS_MAX = 8
AUTO_MIN_BYTES = 64 << 20  # auto mode forks only for inputs this large

_KEY = b'"engineer_id"'


class WorkerFailed(RuntimeError):
    """A worker died or raised; no result."""


class InputFailed(OSError):
    """A worker could not read an input (the text is the OSError's)."""


def auto_jobs(total_bytes: int, cpus: int | None = None) -> int:
    if total_bytes < AUTO_MIN_BYTES:
        return 1
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not on every platform
            cpus = os.cpu_count() or 1
    return max(1, min(cpus, JOBS_MAX))


def owner(engineer_id: str, jobs: int) -> int:
    return crc32(engineer_id.encode("utf-8")) % jobs


def _chunks(fh: Any, size: int = 1 << 20) -> Iterator[tuple[bytes, list[bytes], bytes]]:
    """(chunk, its newline-terminated lines without the newline, the final
    unterminated line or b"") of about `size` bytes, split at line ends."""
    while True:
        buf = fh.read(size)
        if not buf:
            return
        if buf[-1] != 10:
            buf += fh.readline()
        lines = buf.split(b"\n")
        yield buf, lines, lines.pop()  # pop: b"" after a final newline


def read_part(
    paths: Sequence[str | os.PathLike],
    me: int,
    jobs: int,
    on_bad: Callable[[int, BadLine], None],
    *,
    source_map: SourceMap,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Event]:
    """`read_jsonl` restricted to the events worker `me` of `jobs` owns;
    `on_bad(file_index, bad_line)` for the bad lines it reports (same
    lines, numbers and reasons as read_jsonl)."""
    key = _KEY
    add_line = source_map.add
    for file_index, path in enumerate(paths):
        name = os.fspath(path)
        source_map.start(name)
        with open(name, "rb") as fh:
            done = 0  # lines of this file before the chunk
            for buf, lines, tail in _chunks(fh):
                clean = buf.find(b"\\") < 0
                first, last_terminated = done + 1, done + len(lines)
                if tail:
                    lines.append(tail)
                done += len(lines)
                for lineno, raw in enumerate(lines, first):
                    # The owner from the bytes, when certain: no backslash
                    # (every `"` delimits a string, keys are literal), one
                    # `"engineer_id"` token, then `:"` and a closing quote.
                    # If the line is an event at all, that value is its
                    # engineer_id (nested, it would not be an event).
                    parts = raw.split(key)
                    certain = False
                    if len(parts) == 2 and (clean or raw.find(b"\\") < 0):
                        rest = parts[1]
                        if rest[:2] == b':"':
                            end = rest.find(b'"', 2)
                            if end >= 0:
                                if crc32(rest[2:end]) % jobs != me:
                                    continue
                                certain = True
                    if not certain and (not raw or raw.isspace()):
                        continue  # blank: not an event
                    event = line_event(raw)
                    if event is None:
                        try:  # the reference parser's messages count the newline
                            event = parse_line_reference(
                                raw + b"\n" if lineno <= last_terminated else raw)
                        except EventError as exc:
                            if certain or me == 0:
                                on_bad(file_index, BadLine(name, lineno, str(exc)))
                            continue
                    if not certain and owner(event.engineer_id, jobs) != me:
                        continue
                    add_line(lineno)
                    yield event
                if on_bytes is not None:
                    on_bytes(len(buf))


@dataclass
class Part:
    """One worker's share of the replay, as sent to the parent."""

    counts: tuple[int, int, int, int, int]  # events_in, duplicates, conflicts, unique, hr
    balances: dict
    bad: list = field(default_factory=list)  # (file_index, BadLine)
    conflicts: list = field(default_factory=list)  # (file_index, line, path, Report)
    ledger_reports: list = field(default_factory=list)  # Reports, engineer order


def work(paths: Sequence[str], me: int, jobs: int, as_of: datetime | None,
         send_bytes: Callable[[int], None] | None = None) -> Part:
    """One worker's replay (also callable in-process, for tests)."""
    bad: list = []
    source_map = SourceMap()

    def on_bytes(n: int) -> None:
        if send_bytes is not None:
            send_bytes(n)
        gc.collect(1)  # as the one-process replay: freeze what was read
        gc.freeze()

    events = read_part(paths, me, jobs, lambda i, b: bad.append((i, b)),
                       source_map=source_map, on_bytes=on_bytes)
    result = replay_events(events, as_of)
    conflicts = []
    for rep in result.reports[:result.conflicts]:
        file_index, path, line = source_map.locate_file(rep.position)  # type: ignore[arg-type]  # conflicts carry one
        conflicts.append((file_index, line, path, rep))
    return Part(
        (result.events_in, result.duplicates, result.conflicts, result.unique_events,
         result.hr_events),
        result.balances, bad, conflicts, result.reports[result.conflicts:])


def _child(paths: Sequence[str], me: int, jobs: int, as_of: datetime | None, conn: Any) -> None:
    gc.freeze()  # what the parent had: never rescanned here
    try:
        msg: tuple = ("ok", work(paths, me, jobs, as_of, conn.send if me == 0 else None))
    except OSError as exc:
        msg = ("oserror", str(exc))
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails loudly
        msg = ("error", traceback.format_exc())
    conn.send(msg)
    conn.close()


class Workers:
    """`with Workers(paths, as_of, jobs) as w: parts = w.collect()`: forks on
    entry (before the caller starts any thread, e.g. a progress bar), kills
    and reaps whatever is left on exit. `collect` raises WorkerFailed or
    InputFailed rather than return anything partial."""

    def __init__(self, paths: Sequence[str], as_of: datetime | None, jobs: int) -> None:
        self.paths, self.as_of, self.jobs = list(paths), as_of, jobs
        self.procs: list = []
        self.conns: list = []

    def __enter__(self) -> "Workers":
        ctx = multiprocessing.get_context("fork")
        try:
            for w in range(self.jobs):
                recv_end, send_end = ctx.Pipe(duplex=False)
                self.conns.append(recv_end)
                proc = ctx.Process(target=_child, args=(self.paths, w, self.jobs, self.as_of, send_end),
                                   name=f"compstream-replay-{w + 1}", daemon=True)
                proc.start()
                self.procs.append(proc)
                send_end.close()  # only the child writes: EOF here = it is gone
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.exitcode is None:
                proc.kill()
            proc.join()
        for conn in self.conns:
            conn.close()

    def _failed(self, w: int, what: str) -> WorkerFailed:
        return WorkerFailed(f"replay worker {w + 1} of {self.jobs} {what}; no output written")

    def collect(self, on_bytes: Callable[[int], None] | None = None) -> list[Part]:
        parts: list[Any] = [None] * self.jobs
        pending = {c: w for w, c in enumerate(self.conns)}
        while pending:
            for conn in wait(list(pending)):
                w = pending[conn]
                try:
                    msg = conn.recv()  # type: ignore[union-attr,call-arg]  # wait() on Connections yields them
                except EOFError:
                    self.procs[w].join(5)
                    raise self._failed(w, f"died (exit code {self.procs[w].exitcode})") from None
                if type(msg) is int:  # worker 0's progress, in bytes read
                    if on_bytes is not None:
                        on_bytes(msg)
                    continue
                del pending[conn]
                status, payload = msg
                if status == "oserror":
                    raise InputFailed(payload)
                if status != "ok":
                    raise self._failed(w, f"failed:\n{payload}")
                parts[w] = payload
        for w, proc in enumerate(self.procs):
            proc.join()
            if proc.exitcode != 0:
                raise self._failed(w, f"exited with code {proc.exitcode}")
        return parts


@dataclass
class Merged:
    result: ReplayResult
    bad: list[BadLine]  # in input order
    where: list[tuple[str, int]]  # conflict position -> (path, line)


def merge(parts: list[Part]) -> Merged:
    """The parts as one replay: the result `replay_events` gives for all the
    input, with conflict positions indexing `where` instead of the input."""
    result = ReplayResult(balances={})
    balances: dict[str, Any] = {}
    for part in parts:
        balances.update(part.balances)
        n, dups, conflicts, unique, hr = part.counts
        result.events_in += n
        result.duplicates += dups
        result.conflicts += conflicts
        result.unique_events += unique
        result.hr_events += hr
    result.balances = {eng: balances[eng] for eng in sorted(balances)}
    located = sorted((c for part in parts for c in part.conflicts), key=lambda c: c[:2])
    result.reports = [replace(rep, position=i) for i, (_, _, _, rep) in enumerate(located)]
    # Each engineer's reports come from one worker, in fold order: a stable
    # sort by engineer gives the one-process order.
    result.reports += sorted((r for part in parts for r in part.ledger_reports),
                             key=lambda r: r.engineer_id)
    bad = sorted((b for part in parts for b in part.bad), key=lambda b: (b[0], b[1].line))
    return Merged(result, [b for _, b in bad], [(path, line) for _, line, path, _ in located])
