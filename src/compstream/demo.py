"""`compstream demo`: the whole data path on embedded defaults, start to stop.

broker (started if needed) -> topics -> worker subprocess -> sample events ->
balances read back from the balance topic -> worker stopped -> history row
counts from ClickHouse (chdb) -> broker stopped if the demo started it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from compstream.config import Settings
from compstream.domain.events import LEDGER_EVENT_TYPES, event_from_dict
from compstream.publish import publish_events
from compstream.readback import latest_balances

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SAMPLE = EXAMPLES / "sample-events.jsonl"
PERIOD = "2026-10"  # the sample's month: the demo closes it and checks the org report
FINAL_TIMEOUT_S = 90
# The demo's worker applies the idleness rule after 2 quiet seconds, so the
# sample's month becomes final without more usage (docs/engines.md).
DEMO_IDLE_ADVANCE_S = "2"
MARKER = ".compstream-demo"
BALANCES_TIMEOUT_S = 180
# A pipe gets 80 columns by default; the balance table needs more.
console = Console(width=None if sys.stdout.isatty() else 120)


def _dollars(nanos: int) -> str:
    sign = "-" if nanos < 0 else ""
    cents = abs(nanos) // 10_000_000
    return f"{sign}${cents // 100:,}.{cents % 100:02d}"


def load_events(path: Path) -> list:
    events = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                events.append(event_from_dict(json.loads(line)))
            except Exception as exc:
                raise SystemExit(f"{path}:{number}: {exc}") from exc
    return events


def _port_free(port: int) -> bool:
    # Connect, not bind: a wildcard listener on the port may still let a bind
    # to 127.0.0.1 succeed, and then the worker's own bind fails.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _start_worker(settings: Settings, log_path: Path) -> subprocess.Popen:
    port = settings.web_port
    if not _port_free(port):
        with socket.socket() as s:  # the configured port is taken: any free one
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    env = dict(os.environ, COMPSTREAM_DATA_DIR=str(settings.data_dir),
               COMPSTREAM_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, COMPSTREAM_WEB_PORT=str(port))
    env.setdefault("COMPSTREAM_IDLE_ADVANCE_S", DEMO_IDLE_ADVANCE_S)
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "compstream.cli.main", "worker"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def run_demo(settings: Settings, fresh: bool = True, events_file: str | None = None) -> int:
    from compstream.broker import runtime
    from compstream.broker.topics import ensure_topics

    data_dir = settings.data_dir
    if fresh and data_dir.exists():
        if not (data_dir / MARKER).exists() and any(data_dir.iterdir()):
            console.print(f"[red]{data_dir} is not a demo dir (no {MARKER}); refusing to wipe it. "
                          "Set COMPSTREAM_DATA_DIR to an empty dir or pass --no-fresh.[/red]")
            return 2
        runtime.stop(data_dir / "kafka")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("compstream demo data; safe to delete\n")

    events = load_events(Path(events_file) if events_file else SAMPLE)
    expected: dict[str, int] = {}
    for event in {e.event_id: e for e in events}.values():
        if event.type in LEDGER_EVENT_TYPES:
            expected[event.engineer_id] = expected.get(event.engineer_id, 0) + 1

    host, _, port = settings.kafka_bootstrap.rpartition(":")
    broker_dir = data_dir / "kafka"
    started_broker = not runtime.status(broker_dir).running
    t0 = time.monotonic()
    with console.status("starting the Kafka broker (first run downloads the jars with Maven)…"):
        info = runtime.start(broker_dir, port=int(port), partitions=settings.source_partitions)
    console.print(f"broker   Kafka {info.version} at {info.bootstrap} (ready in {time.monotonic() - t0:.1f}s)")
    worker = None
    try:
        ensure_topics(settings.kafka_bootstrap, settings.topics, settings.source_partitions)
        worker = _start_worker(settings, data_dir / "worker.log")
        console.print(f"worker   pid {worker.pid}, log {data_dir / 'worker.log'}")
        sent = publish_events(events, settings.kafka_bootstrap, settings.topics)
        console.print(f"produced {sent} events from {events_file or SAMPLE.name}")
        if not events_file:
            granted = _issue_policy_grants(settings)
            events += granted
            for event in granted:
                expected[event.engineer_id] = expected.get(event.engineer_id, 0) + 1
        balances = _wait_for_balances(settings, worker, expected)
        _print_balances(balances)
        _check_against_replay(events, balances)
        missing = [e for e, n in expected.items() if balances.get(e, {}).get("events_applied") != n]
        final = not missing and _wait_for_final(settings, worker, PERIOD)
    finally:
        if worker is not None:
            _stop_worker(worker)
        if started_broker:
            runtime.stop(broker_dir)
    counts = _history_counts(settings)
    console.print("history  " + ", ".join(f"{table}: {n} rows" for table, n in counts.items())
                  + f"  ({settings.clickhouse_dsn})")
    if missing:
        console.print(f"[red]balances incomplete for {missing}; see {data_dir / 'worker.log'}[/red]")
        return 1
    if final and not _check_report_against_replay(settings, events, PERIOD):
        return 1
    console.print("[green]demo complete: broker and worker stopped[/green]")
    return 0


def _issue_policy_grants(settings: Settings) -> list:
    """The month's allowance grants from examples/policy.toml + roster.csv
    (`compstream grants issue`), published like HR would."""
    from compstream.hr.history import from_kafka
    from compstream.hr.runs import issue_grants, load_policies, rolls_over

    policies = load_policies([EXAMPLES / "policy.toml"])
    issue = issue_grants(PERIOD, policies, EXAMPLES / "roster.csv", from_kafka(settings, usage=rolls_over(policies)))
    granted = issue.new
    publish_events(granted, settings.kafka_bootstrap, settings.topics)
    console.print(f"granted  {len(granted)} grant events for {PERIOD} from examples/policy.toml + roster.csv "
                  "(compstream grants issue)")
    return granted


def _period_end(period: str) -> datetime:
    from compstream.history.rows import period_bounds

    return period_bounds(period)[1]


def _wait_for_final(settings: Settings, worker: subprocess.Popen, period: str) -> bool:
    """Until every balance says its postings are final through the period's
    end (the idleness rule of the transactional engine closes the quiet month)."""
    end = _period_end(period)
    deadline = time.monotonic() + FINAL_TIMEOUT_S
    with console.status(f"waiting for {period} to become final…"):
        while time.monotonic() < deadline and worker.poll() is None:
            balances = latest_balances(settings.kafka_bootstrap, settings.topics.balances, None, 2)
            marks = [b.get("watermark") for b in balances.values()]
            if marks and all(m is not None and m >= end for m in marks):
                console.print(f"final    {period} is final: every balance is final through "
                              f"{min(m for m in marks if m is not None):%Y-%m-%d %H:%M} UTC (idleness rule)")
                return True
            time.sleep(1)
    console.print(f"[yellow]{period} is not final yet (the {settings.engine} engine"
                  f"{' has no idleness rule' if settings.engine == 'faust' else ''}); "
                  "reports show it as of the last final posting[/yellow]")
    return False


def _check_report_against_replay(settings: Settings, events: list, period: str) -> bool:
    """The period's org report (from the history) equals the offline replay
    for every engineer and field; prints the verdict."""
    from datetime import timedelta

    from compstream.domain.replay import replay
    from compstream.history import open_history
    from compstream.reports.org import build_org

    store = open_history(settings.clickhouse_dsn)
    try:
        report = build_org(store, period)
    finally:
        store.close()
    from compstream.reports.finality import finality_text

    console.print(f"finality {period} org report: {finality_text(report['finality'])}")
    want = replay(events, as_of=_period_end(period) - timedelta(microseconds=1))
    fields = ("issued_nanos", "consumed_nanos", "expired_nanos", "revoked_nanos", "forfeited_nanos",
              "overdraft_nanos", "usage_cost_nanos")
    got = {row["engineer_id"]: row for row in report["engineers"] if row["engineer_id"] is not None}
    differ = []
    for engineer, balance in sorted(want.items()):
        b = balance.to_dict()
        row = got.get(engineer, {})
        bad = [f for f in fields if row.get(f, 0) != b[f]]
        if bad:
            differ.append(f"{engineer}: " + ", ".join(f"{f} {row.get(f, 0)} vs {b[f]}" for f in bad))
    if differ:
        console.print(f"[red]the {period} org report differs from the offline replay:[/red]\n  "
                      + "\n  ".join(differ))
        return False
    console.print(f"report   the {period} org report equals the offline replay for all {len(want)} engineers "
                  f"({', '.join(f.removesuffix('_nanos') for f in fields)})")
    return True


def _wait_for_balances(settings: Settings, worker: subprocess.Popen, expected: dict[str, int]) -> dict:
    deadline = time.monotonic() + BALANCES_TIMEOUT_S
    balances: dict = {}
    with console.status("waiting for balances on the balance topic…"):
        while time.monotonic() < deadline:
            balances = latest_balances(settings.kafka_bootstrap, settings.topics.balances, expected, 3)
            if all(balances.get(e, {}).get("events_applied") == n for e, n in expected.items()):
                break
            if worker.poll() is not None:
                console.print(f"[red]the worker exited with code {worker.returncode}[/red]")
                break
    return balances


def _print_balances(balances: dict[str, dict]) -> None:
    table = Table(title="Balances (from the balance topic)")
    for column in ("engineer", "issued", "used", "expired", "revoked", "forfeited",
                   "overdraft", "available", "tokens (M)", "events"):
        table.add_column(column, justify="left" if column == "engineer" else "right")
    for engineer in sorted(balances):
        b = balances[engineer]
        table.add_row(engineer, *(_dollars(b[k]) for k in (
            "issued_nanos", "usage_cost_nanos", "expired_nanos", "revoked_nanos",
            "forfeited_nanos", "overdraft_nanos", "available_nanos")),
            f"{(b['input_tokens'] + b['output_tokens']) / 1e6:,.1f}", str(b["events_applied"]))
    console.print(table)


def _check_against_replay(events: list, balances: dict[str, dict]) -> None:
    """Recompute each balance offline (sorted batch replay, as of the instant
    the streamed balance is for) and say whether the stream agrees."""
    from compstream.domain.replay import replay

    differ = []
    for engineer, record in balances.items():
        want = replay([e for e in events if e.engineer_id == engineer], as_of=record["as_of"])
        expected = want[engineer].to_dict()
        if any(record.get(k) != v for k, v in expected.items() if k in record):
            differ.append(engineer)
    if differ:
        console.print(f"[red]streamed balances differ from an offline replay for {differ}[/red]")
    else:
        console.print(f"check    all {len(balances)} streamed balances equal an offline replay of the same events")


def _history_counts(settings: Settings) -> dict[str, int]:
    from compstream.history import open_history

    store = open_history(settings.clickhouse_dsn)
    try:
        return store.table_counts()
    finally:
        store.close()
