"""Smoke test of the benchmark harness (`python -m bench.run`): a tiny run
against the session's real broker, so the suite cannot rot. It checks that
every section produced figures and the report was written; it asserts no
timings (CI machines are noisy; `make bench` is where figures come from)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest


def test_fingerprint_fast_path_matches_payload_fingerprint():
    """The book's hot-path fingerprint must stay byte-equal to the canonical
    payload_fingerprint (seen-sets store digests of that text)."""
    from compstream.domain.book_codec import fingerprint_text
    from compstream.domain.events import payload_fingerprint
    from compstream.synth import generate

    events = list(generate(40, 400, with_hr=True))
    assert len({type(e) for e in events}) >= 5
    for e in events:
        assert fingerprint_text(e) == payload_fingerprint(e)


def test_a_report_names_the_engine_that_ran(tmp_path: Path):
    from bench import e2e, run
    from compstream.config import Topics

    assert run._engine_ran({"env": dict(e2e.FAUST)}, "Faust, leaderboards on") == "Faust, leaderboards on"
    assert run._engine_ran({"env": dict(e2e.TRANSACTIONAL)}, "transactional") == "transactional"
    assert "mismatch" in run._engine_ran({"env": dict(e2e.TRANSACTIONAL)}, "Faust")
    assert "mismatch" in run._engine_ran({"env": {}}, "Faust")
    with pytest.raises(ValueError, match="names its engine"):
        e2e.Worker("127.0.0.1:1", Topics.with_prefix("x"), tmp_path, "g", 4, env={"COMPSTREAM_LEADERBOARDS": "off"})


@pytest.mark.kafka
@pytest.mark.timeout(900)
def test_bench_harness_tiny_run(kafka_bootstrap: str, tmp_path: Path):
    # bench-only dependencies (the `bench` extra)
    pytest.importorskip("confluent_kafka")
    pytest.importorskip("quixstreams")
    from bench import run

    out = tmp_path / "benchmarks.md"
    rc = run.main([
        "--bootstrap", kafka_bootstrap, "--out", str(out),
        "--events", "300", "--engineers", "6", "--rate", "200", "--latency-s", "1",
        "--stage-events", "600", "--history-rows", "300", "--replay-events", "600",
    ])
    assert rc == 0
    text = out.read_text()
    assert "## Results" in text and "## Targets" in text
    raw = json.loads(text.split("```json\n", 1)[1].split("\n```", 1)[0])
    assert raw["errors"] == {}, raw["errors"]
    r = raw["results"]
    for section in ("produce", "ceiling_aiokafka", "ceiling_confluent", "ceiling_confluent_tuned", "ceiling_faust",
                    "ceiling_quix", "stage_decode", "stage_ledger", "stage_history", "e2e", "e2e_2w", "e2e_nolb",
                    "e2e_txn", "e2e_txn_b", "e2e_txn_profile", "quix", "latency", "latency_low", "latency_txn",
                    "latency_txn_low", "replay"):
        assert section in r, section
    assert r["ceiling_aiokafka"]["complete"] and r["ceiling_confluent"]["complete"]
    assert r["ceiling_confluent_tuned"]["complete"] and r["ceiling_confluent_tuned"]["settings"]
    for ceiling in ("ceiling_faust", "ceiling_quix"):
        assert r[ceiling]["complete"] and r[ceiling]["messages"] == r["dataset"]["events"], r[ceiling]
    assert r["quix"]["complete"]
    e2e = r["e2e"]
    assert e2e["engineers_wrong_count"] == 0, e2e
    assert e2e["history_events_ok"], e2e["history"]
    assert r["latency"]["matched"] > 0 and r["latency_low"]["matched"] > 0
    nolb = r["e2e_nolb"]
    # The Faust rows ran Faust (they once ran the default engine under its name).
    assert nolb["env"] == {"COMPSTREAM_ENGINE": "faust", "COMPSTREAM_LEADERBOARDS": "off"}
    for key in ("e2e", "latency", "latency_low"):
        assert r[key]["env"] == {"COMPSTREAM_ENGINE": "faust"}, key
    assert "mismatch" not in text
    assert nolb["engineers_wrong_count"] == 0 and nolb["history_events_ok"], nolb
    # The worker ranked (published leaderboard candidates) only with leaderboards on.
    assert e2e["leaderboard_candidate_records"] > 0 and nolb["leaderboard_candidate_records"] == 0
    assert "## Per-message cost" in text and "Replay bound" in text
    # The transactional engine: exact balances, every event in the history
    # (through the history topic and the embedded loader), books restored.
    for key in ("e2e_txn", "e2e_txn_b", "e2e_txn_profile"):
        txn = r[key]
        assert txn["env"]["COMPSTREAM_ENGINE"] == "transactional", txn
        assert txn["engineers_wrong_count"] == 0 and txn["history_events_ok"], txn
        # (a tiny backlog fits one transaction: no sustained span to time)
        assert txn["wall_from_spawn_events_per_s"] and txn["history_loaded_from_spawn_s"], txn
        assert txn["worker_exit"] == 0, txn
    assert r["e2e_txn"]["state_from_changelog"]["engineers"] > 0
    # The engine's log counts changelog records read (a key may repeat until compaction).
    assert r["e2e_txn"]["restore"]["changelog_records"] >= r["e2e_txn"]["state_from_changelog"]["engineers"]
    from bench import e2e as e2e_mod

    if e2e_mod.py_spy_path() is not None:
        assert r["e2e_txn_profile"]["profile"]["inclusive_pct"], r["e2e_txn_profile"]["profile"]
    for key in ("latency_txn", "latency_txn_low"):
        assert r[key]["matched"] > 0 and r[key]["visible_matched"] > 0, r[key]
    assert "## Targets: transactional engine" in text and "## Engines side by side" in text
    # CPU by process (/proc): the worker's main thread worked from spawn to
    # the balances (its imports alone take CPU); the broker is counted only
    # when the bench started it, not one given with --bootstrap.
    cpu = r["e2e_txn"]["cpu"]
    assert cpu["worker_main"]["cpu_s"] > 0 and cpu["total"]["cpu_s"] >= cpu["worker_main"]["cpu_s"], cpu
    assert "broker" not in cpu and cpu["events_per_s_max"] > 0, cpu
    assert "worker_main" in r["latency_txn"]["cpu"], r["latency_txn"]
    assert "## Where the machine's CPU goes" in text
    two = r["e2e_2w"]
    assert two["workers"] == 2 and two["engineers_wrong_count"] == 0, two
    assert two["env"]["COMPSTREAM_ENGINE"] == "transactional", two["env"]
    assert two["history_events_ok"] is None, two["history"]  # left in the topic for an external sink
    # A report re-renders from the results it embeds (after editing the notes).
    assert run.raw_results(text) == raw
    assert run.main(["--rerender", "--out", str(out)]) == 0
    assert out.read_text() == text


def test_small_ratios_keep_their_digits():
    from bench import run

    assert run._fmt(0.004) == "0.004" and run._fmt(0.61) == "0.610" and run._fmt(13.0) == "13.00"


def test_an_ab_variant_must_name_a_source_tree(tmp_path: Path):
    """bench/ab.py runs each variant's worker from its own source tree: a
    variant that names none, or one without the package, stops before a
    broker is started (a typo would otherwise measure the installed build)."""
    from bench.ab import _variants

    (tmp_path / "compstream").mkdir()
    assert _variants([f"base={tmp_path}", f"head={tmp_path}"]) == [
        ("base", {"PYTHONPATH": str(tmp_path.resolve())}), ("head", {"PYTHONPATH": str(tmp_path.resolve())})]
    # One tree under two settings: `+KEY=VALUE` goes to the worker's environment.
    assert _variants([f"emb={tmp_path}", f"ext={tmp_path}+COMPSTREAM_HISTORY_SINK=external"])[1] == \
        ("ext", {"PYTHONPATH": str(tmp_path.resolve()), "COMPSTREAM_HISTORY_SINK": "external"})
    for bad in ([f"base{tmp_path}"], [f"base={tmp_path / 'nowhere'}"], [f"={tmp_path}"],
                [f"a={tmp_path}", f"a={tmp_path}"], [f"a={tmp_path}+NOVALUE"]):
        with pytest.raises(SystemExit):
            _variants(bad)


def test_the_ab_summary_cancels_a_position_effect():
    """Rounds in reversed order: a variant that is the same as the base but
    always 10 % faster when it runs second comes out at ~1.0 (geometric mean
    of its ratios), and a round without a figure gives no summary."""
    from bench.ab import summary

    rounds = [{"base": 100.0, "head": 110.0}, {"head": 100.0, "base": 110.0}]
    assert summary(rounds, "base") == {"base": 1.0, "head": 1.0}
    faster = [{"base": 100.0, "head": 121.0}, {"head": 110.0, "base": 100.0}]
    assert summary(faster, "base") == {"base": 1.0, "head": 1.154}
    assert summary([{"base": 100.0, "head": None}], "base") == {"base": 1.0, "head": None}


def test_the_sustained_rate_leaves_out_the_first_checkpoint():
    """Three checkpoints 10 s apart, each covering 100 events of 300 (two
    engineers): the first one's events were processed before its records'
    time, so 200 events over 20 s, not 300 over 20 s. Records of one burst
    a few ms apart, in any order; a single burst gives no rate."""
    from bench.e2e import first_burst, sustained_rate

    def rec(engineer: str, t: int, applied: int) -> tuple[bytes, int, int]:
        return engineer.encode(), t, applied

    items = [rec("b", 1_003, 40), rec("a", 1_000, 60), rec("a", 1_001, 50),
             rec("a", 11_000, 110), rec("b", 11_004, 90),
             rec("a", 21_000, 160), rec("b", 21_002, 140)]
    assert first_burst(items, int) == (1_003, 100)
    assert sustained_rate(items, 300, int) == (19.999, 10)
    assert sustained_rate(items[:3], 100, int) is None
    assert sustained_rate([], 0, int) is None


def test_changelog_growth_reports_each_day_and_stays_flat_once_days_are_sealed():
    from bench.bench_changelog_growth import run

    days = run(engineers=2, per_day=400, days=6, batch_s=60.0)
    assert [d["day"] for d in days] == [0, 1, 2, 3, 4]
    assert all(d["usage"] > 300 and d["changelog_bytes_per_book_write"] > 0 for d in days)
    # Books grow every day (30 days of ids are kept) ...
    assert days[4]["book_bytes_avg"] > 2 * days[0]["book_bytes_avg"]
    # ... while what a write costs the changelog does not: past days are sealed.
    assert days[4]["changelog_bytes_per_usage"] < 1.5 * days[1]["changelog_bytes_per_usage"]
    assert sum(d["refused_book_full"] for d in days) == 0


def test_changelog_growth_counts_the_usage_a_full_book_refuses():
    """The same rate against a book limit it cannot fit in (the smallest
    allowed): refusals are counted, and every day some usage still fits."""
    from bench.bench_changelog_growth import run
    from compstream.worker.processor import BOOK_BYTES_LIMITS

    days = run(engineers=2, per_day=400, days=3, batch_s=60.0, book_bytes_max=BOOK_BYTES_LIMITS[0])
    refused = [d["refused_book_full"] for d in days]
    assert sum(refused) > 0 and all(d["usage"] > refused[i] for i, d in enumerate(days))


def test_cpu_by_process_reads_proc_and_divides_by_events():
    from bench import common

    before = common.worker_cpu_s(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # burn CPU on this (the main) thread
        pass
    after = common.worker_cpu_s(os.getpid())
    assert after["main"] - before["main"] >= 0.1, (before, after)
    assert common.cpu_s(os.getpid()) >= after["main"]
    assert common.worker_cpu_s(2**22 + 7) == {}  # no such process
    out = common.cpu_between({"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 2.5, "c": 0.5}, events=1_000, wall_s=2.0)
    assert out["a"] == {"cpu_s": 2.0, "us_per_event": 2000.0, "cpus": 1.0}
    assert out["c"]["cpu_s"] == 0.5 and out["total"]["cpu_s"] == 3.0 and out["total"]["cpus"] == 1.5
    assert out["events_per_s_max"] == round((os.cpu_count() or 1) / 3e-3)
