"""The one behavioural suite every HistoryStore adapter must pass.

Subclasses provide the `store` fixture and the four tamper primitives (which
are engine specific: the ClickHouse one uses real mutations)."""

from __future__ import annotations

import dataclasses

import pytest

from compstream.history import HistoryBatch, HistoryError, kafka_batch_token
from compstream.history.rows import BATCH_ROWS_MAX, EVENT_COORD_START, DigestRow
from compstream.history.verify import (
    DELETED,
    DIGEST_MISMATCH,
    EDITED,
    INSERTED,
    REORDERED,
    period_digest,
    store_digest,
    verify_store,
)

from . import data


class HistoryStoreContract:
    # -- adapter hooks ------------------------------------------------------
    def tamper_amount(self, store, engineer_id: str, seq: int, amount: int) -> None:
        raise NotImplementedError

    def tamper_delete(self, store, engineer_id: str, seq: int) -> None:
        raise NotImplementedError

    def tamper_insert(self, store, row) -> None:
        raise NotImplementedError

    # -- migrations ---------------------------------------------------------
    def test_migrate_twice_is_a_noop(self, store):
        assert store.applied_migrations() == [1, 2, 3, 4, 5, 6]  # fixture migrated once
        assert store.migrate() == []
        assert store.applied_migrations() == [1, 2, 3, 4, 5, 6]

    def test_hr_events_keep_their_fields(self, store):
        from datetime import datetime, timezone

        from compstream.domain.events import CashCompensation, LeaderboardPrivacy, TeamAssigned
        from compstream.history.rows import EventRow

        at = datetime(2026, 10, 1, tzinfo=timezone.utc)
        events = [TeamAssigned("hr-1", "carol", "infra", at), LeaderboardPrivacy("hr-2", "carol", True, at),
                  CashCompensation("hr-3", "carol", 180_000 * 10**9, at)]
        rows = tuple(EventRow.from_event(e, topic="g", partition=0, offset=i, ingest_time=at)
                     for i, e in enumerate(events))
        store.append_batch(HistoryBatch(events=rows), "hr")
        stored = store.events_for("carol")
        assert stored == list(rows)
        assert (stored[0].team_id, stored[1].opted_out, stored[2].annual_cash_nanos) == ("infra", True, 180_000 * 10**9)

    def test_events_come_in_the_order_they_were_applied(self, store):
        """applied_seq, not the Kafka timestamp: a batch applies HR events
        first, and producers' clocks differ. Rows stored before applied_seq
        was recorded (None) come first, in ingest order."""
        from datetime import datetime, timedelta, timezone

        from compstream.domain.events import GrantIssued, Usage
        from compstream.history.rows import EventRow

        at = datetime(2026, 10, 1, tzinfo=timezone.utc)
        old = EventRow.from_event(Usage("u-old", "dora", "openai", "m", at, 1, 1, 0, 0, 5), topic="u", partition=0,
                                  offset=0, ingest_time=at + timedelta(hours=9))
        usage = EventRow.from_event(Usage("u-1", "dora", "openai", "m", at, 1, 1, 0, 0, 5), topic="u", partition=0,
                                    offset=1, ingest_time=at + timedelta(hours=1), applied_seq=3)
        grant = EventRow.from_event(GrantIssued("g-1", "dora", "G", 10, at, None, "bonus"), topic="g", partition=0,
                                    offset=0, ingest_time=at + timedelta(hours=2), applied_seq=2)
        store.append_batch(HistoryBatch(events=(usage, grant, old)), "order")
        assert [r.event_id for r in store.events_for("dora")] == ["u-old", "g-1", "u-1"]
        assert [r.applied_seq for r in store.events_for("dora")] == [None, 2, 3]

    def test_late_events_by_engineer_in_applied_order(self, store):
        """Only rows applied late with a recorded watermark; a retry's copy
        counted once."""
        from datetime import datetime, timedelta, timezone

        from compstream.domain.events import Usage
        from compstream.history.rows import EventRow, LateEvent

        at = datetime(2026, 10, 1, tzinfo=timezone.utc)
        wm = at + timedelta(hours=7)

        def row(event_id, engineer, offset, seq, late=True, watermark=wm):
            return EventRow.from_event(Usage(event_id, engineer, "openai", "m", at, 1, 1, 0, 0, 5), topic="u",
                                       partition=0, offset=offset, ingest_time=at + timedelta(hours=8), late=late,
                                       applied_watermark=watermark, applied_seq=seq)

        rows = (row("z-2", "zoe", 0, 5), row("z-1", "zoe", 1, 4, watermark=wm - timedelta(hours=1)),
                row("a-1", "abe", 2, 2), row("a-0", "abe", 3, 1, late=False),
                row("a-old", "abe", 4, None, watermark=None))
        store.append_batch(HistoryBatch(events=rows), "late")
        store.append_batch(HistoryBatch(events=rows[:1]), "late")  # a retry
        assert store.late_events() == [LateEvent("abe", "a-1", wm, 2),
                                       LateEvent("zoe", "z-1", wm - timedelta(hours=1), 4),
                                       LateEvent("zoe", "z-2", wm, 5)]

    # -- round trip ---------------------------------------------------------
    def test_round_trip_preserves_every_field(self, store):
        batch = data.full_batch()
        store.append_batch(batch, "rt:0-40")
        alice_events = [r for r in batch.events if r.engineer_id == "alice"]
        assert store.events_for("alice") == alice_events
        assert store.postings_for("bob") == [p for p in batch.postings if p.engineer_id == "bob"]
        assert store.count_events() == len(batch.events)
        assert store.engineers() == ["alice", "bob"]
        dead = store.dead_letters()
        assert [d.raw for d in dead] == [d.raw for d in data.dead_letter_rows()]
        assert store.dead_letters(stage="ledger") == [data.dead_letter_rows()[2]]
        assert store.leaderboard_windows("daily", data.t(9, 3)) == data.window_rows()

    def test_leaderboard_revisions_are_all_kept_and_retries_are_not(self, store):
        first = data.window_rows()
        revised = [dataclasses.replace(r, revision=1, value=r.value + 1) for r in first[:2]]
        store.append_batch(HistoryBatch(leaderboard_windows=tuple(first)), "leaderboard:day:r0")
        store.append_batch(HistoryBatch(leaderboard_windows=tuple(revised)), "leaderboard:day:r1")
        store.append_batch(HistoryBatch(leaderboard_windows=tuple(revised)), "leaderboard:day:r1")  # a retry
        stored = store.leaderboard_windows("daily", data.t(9, 3))
        assert stored == sorted(first + revised, key=lambda r: (r.dimension, r.revision, r.rank))
        assert store.table_counts()["leaderboard_windows"] == len(first) + len(revised)

    def test_unpriced_usage_keeps_null_cost(self, store):
        store.append_batch(data.full_batch(), "nulls")
        unpriced = [e for e in store.events_for("alice") if e.event_id == "alice-u4"]
        assert unpriced[0].cost_nanos is None and unpriced[0].unpriced_reason == "unknown model"
        grant = [e for e in store.events_for("alice") if e.event_id == "alice-g2"][0]
        assert grant.expires_at is None and grant.provider is None and grant.amount_nanos == 2_000_000_000

    def test_postings_by_period(self, store):
        store.append_batch(data.full_batch(), "period")
        september = store.postings_by_period("2026-09")
        assert september and all(p.event_time.month == 9 for p in september)
        october = store.postings_by_period("2026-10", engineer_id="alice")
        assert {p.engineer_id for p in october} == {"alice"} and all(p.event_time.month == 10 for p in october)
        assert len(september) + len(store.postings_by_period("2026-10")) == len(data.posting_rows())
        with pytest.raises(HistoryError):
            store.postings_by_period("2026-9")

    # -- high-water marks (the worker sink's exactly-once filter) -------------
    def test_high_water_marks(self, store):
        batch = data.full_batch()
        assert store.offset_max("events", "any", 0) == -1
        assert store.posting_seq_max(["alice"]) == {}
        store.append_batch(batch, "hwm")
        for table, rows, topic_of, part_of, off_of in (
            ("events", batch.events, "kafka_topic", "kafka_partition", "kafka_offset"),
            ("dead_letters", batch.dead_letters, "kafka_topic", "kafka_partition", "kafka_offset"),
        ):
            for row in rows:
                same = [r for r in rows if getattr(r, topic_of) == getattr(row, topic_of)
                        and getattr(r, part_of) == getattr(row, part_of)]
                assert store.offset_max(table, getattr(row, topic_of), getattr(row, part_of)) == max(
                    getattr(r, off_of) for r in same)
        want = {}
        for p in batch.postings:
            want[p.engineer_id] = max(want.get(p.engineer_id, 0), p.seq)
        assert store.posting_seq_max(list(want) + ["nobody"]) == want
        with pytest.raises(HistoryError):
            store.offset_max("postings", "t", 0)

    def test_table_and_event_id_counts(self, store):
        batch = data.full_batch()
        store.append_batch(batch, "counts")
        counts = store.table_counts()
        assert counts["events"] == len(batch.events) and counts["postings"] == len(batch.postings)
        assert store.event_id_counts() == (len(batch.events), len({e.event_id for e in batch.events}))

    # -- listing (replay from the history) ------------------------------------
    def test_event_payloads_pages_in_kafka_order_once_each(self, store):
        rows = data.event_rows()
        store.append_batch(HistoryBatch(events=tuple(rows[:20])), "usage:0:0-19")
        store.append_batch(HistoryBatch(events=tuple(rows[10:])), "usage:0:10-35")  # overlapping re-batch
        listed, after = [], EVENT_COORD_START
        while page := store.event_payloads(after, 7):
            assert len(page) <= 7
            listed.extend(page)
            after = page[-1].coord
        assert [tuple(p) for p in listed] == sorted(
            (r.kafka_topic, r.kafka_partition, r.kafka_offset, r.payload) for r in rows)
        with pytest.raises(HistoryError):
            store.event_payloads(EVENT_COORD_START, 0)

    def test_history_source_replays_every_event_and_names_bad_payloads(self, store, monkeypatch):
        from compstream.replay import history_source

        monkeypatch.setattr(history_source, "PAGE_ROWS", 5)  # several pages
        rows = data.event_rows()
        broken = dataclasses.replace(rows[0], kafka_topic="zz", kafka_offset=99, payload="{not json")
        store.append_batch(HistoryBatch(events=(*rows, broken)), "source")
        bad = []
        events = list(history_source.history_events(store, bad.append))
        ordered = sorted(rows, key=lambda r: (r.kafka_topic, r.kafka_partition, r.kafka_offset))
        assert [e.event_id for e in events] == [r.event_id for r in ordered]
        assert [(b.topic, b.offset, b.stage) for b in bad] == [("zz", 99, "history:payload")]
        assert history_source.history_event_total(store) == len(rows) + 1

    # -- exactly once -------------------------------------------------------
    def test_identical_retry_stores_nothing_new(self, store):
        batch = data.full_batch()
        token = kafka_batch_token(data.USAGE, 0, 0, 11)
        store.append_batch(batch, token)
        store.append_batch(batch, token)  # the forced retry
        n = len(batch.events)
        # Physical rows, no FINAL: the insert token alone dropped the retry.
        assert store.event_counts(collapsed=False) == (n, n)
        assert store.posting_counts(collapsed=False) == (len(batch.postings),) * 2
        assert len(store.dead_letters()) == 3

    def test_overlapping_rebatch_is_collapsed(self, store):
        rows = data.event_rows()
        # First attempt stored offsets 0..19; the re-batch after a crash
        # covers 10..end in a differently sized batch (new token).
        store.append_batch(HistoryBatch(events=tuple(rows[:20])), "usage:0:0-19")
        store.append_batch(HistoryBatch(events=tuple(rows[10:])), "usage:0:10-35")
        physical = store.event_counts(collapsed=False)
        assert physical.rows > physical.distinct  # the token cannot catch this
        assert store.event_counts(collapsed=True) == (len(rows), len(rows))
        assert store.count_events() == len(rows)
        assert store.events_for("bob") == [r for r in rows if r.engineer_id == "bob"]
        store.optimize()
        assert store.event_counts(collapsed=False) == (len(rows), len(rows))

    def test_different_tokens_same_batch_other_table_not_blocked(self, store):
        # Per-table tokens: a digest-only batch reusing a token string does
        # not swallow events of another batch with the same caller token.
        store.append_batch(HistoryBatch(events=tuple(data.event_rows()[:3])), "same")
        store.append_batch(HistoryBatch(postings=tuple(data.posting_rows()[:3])), "same")
        assert store.event_counts(collapsed=False).rows == 3
        assert store.posting_counts(collapsed=False).rows == 3

    def test_batch_bounds_and_tokens_are_checked(self, store):
        with pytest.raises(HistoryError):
            store.append_batch(HistoryBatch(events=tuple(data.event_rows()[:1])), "")
        row = data.event_rows()[0]
        with pytest.raises(HistoryError):
            HistoryBatch(events=(row,) * (BATCH_ROWS_MAX + 1))
        with pytest.raises(HistoryError):
            HistoryBatch(postings=(row,))

    # -- verification -------------------------------------------------------
    def _loaded(self, store):
        store.append_batch(data.full_batch(), "verify")
        report = verify_store(store)
        assert report.clean, report.findings
        assert report.engineers == 2 and report.postings == len(data.posting_rows())

    def test_edit_amount_is_named(self, store):
        self._loaded(store)
        self.tamper_amount(store, "alice", 4, 1)
        report = verify_store(store)
        assert [(f.engineer_id, f.seq, f.kind) for f in report.findings] == [("alice", 4, EDITED)]

    def test_deleted_row_is_named(self, store):
        self._loaded(store)
        self.tamper_delete(store, "bob", 3)
        findings = verify_store(store).findings
        assert [(f.engineer_id, f.seq, f.kind) for f in findings] == [("bob", 3, DELETED)]

    def test_inserted_row_is_named(self, store):
        self._loaded(store)
        genuine = store.postings_for("alice")[4]
        self.tamper_insert(store, dataclasses.replace(genuine, amount_nanos=1, hash="f" * 64))
        findings = verify_store(store).findings
        assert [(f.engineer_id, f.seq, f.kind) for f in findings] == [("alice", 5, INSERTED)]

    def test_swapped_rows_are_named_reordered(self, store):
        self._loaded(store)
        rows = store.postings_for("bob")
        a, b = rows[2], rows[3]
        for row in (a, b):
            self.tamper_delete(store, "bob", row.seq)
        self.tamper_insert(store, dataclasses.replace(a, seq=b.seq))
        self.tamper_insert(store, dataclasses.replace(b, seq=a.seq))
        findings = verify_store(store, engineer_id="bob").findings
        assert [(f.seq, f.kind) for f in findings] == [(3, REORDERED), (4, REORDERED)]

    def test_rehashed_edit_is_named_at_the_edited_row(self, store):
        self._loaded(store)
        from compstream.history.verify import row_hash

        row = store.postings_for("alice")[5]
        forged = dataclasses.replace(row, amount_nanos=row.amount_nanos - 1)
        forged = dataclasses.replace(forged, hash=row_hash(forged))
        self.tamper_delete(store, "alice", row.seq)
        self.tamper_insert(store, forged)
        findings = verify_store(store, engineer_id="alice").findings
        assert [(f.seq, f.kind) for f in findings] == [(6, EDITED)]

    # -- digests ------------------------------------------------------------
    def test_digest_is_deterministic_and_stored(self, store):
        store.append_batch(data.full_batch(), "digest")
        first = period_digest(store, "2026-09")
        assert first.digest == period_digest(store, "2026-09").digest
        assert first.engineers == 2 and first.postings == len(store.postings_by_period("2026-09"))
        assert first.digest != period_digest(store, "2026-10").digest
        stored = store_digest(store, "2026-09", computed_at=data.t(10, 1, 6))
        assert store.digests("2026-09") == [stored]
        assert verify_store(store).clean

    def test_truncated_tail_is_caught_by_the_digest(self, store):
        store.append_batch(data.full_batch(), "tail")
        store_digest(store, "2026-10", computed_at=data.t(11, 1, 6))
        last = store.postings_for("bob")[-1]
        self.tamper_delete(store, "bob", last.seq)  # the chain itself still verifies
        findings = verify_store(store).findings
        assert [f.kind for f in findings] == [DIGEST_MISMATCH]
        assert "2026-10" in findings[0].detail

    def test_digest_rows_are_all_kept(self, store):
        store.append_batch(data.full_batch(), "keep")
        row = DigestRow("2026-09", "x" * 64, 2, 5, data.t(10, 1))
        store.append_batch(HistoryBatch(digests=(row,)), "d1")
        store.append_batch(HistoryBatch(digests=(dataclasses.replace(row, computed_at=data.t(10, 2)),)), "d2")
        assert len(store.digests("2026-09")) == 2
        assert [f.kind for f in verify_store(store).findings] == [DIGEST_MISMATCH, DIGEST_MISMATCH]

    # -- replay against the ledger core -------------------------------------
    def test_replay_of_stored_events_matches_postings(self, store):
        store.append_batch(data.full_batch(), "replay")
        assert verify_store(store, replay=True).clean

    def test_consistently_rehashed_chain_is_caught_by_replay(self, store):
        from compstream.history.verify import row_hash

        store.append_batch(data.full_batch(), "rehash")
        rows = store.postings_for("alice")
        forged, prev = [], rows[0].prev_hash
        for row in rows:  # the forger shaves 1 nano off seq 3 and re-chains all
            fixed = dataclasses.replace(row, prev_hash=prev, amount_nanos=row.amount_nanos - (row.seq == 3))
            fixed = dataclasses.replace(fixed, hash=row_hash(fixed))
            forged.append(fixed)
            prev = fixed.hash
        for row in rows:
            self.tamper_delete(store, "alice", row.seq)
        for row in forged:
            self.tamper_insert(store, row)
        assert verify_store(store, engineer_id="alice").clean  # the chain alone is fooled
        findings = verify_store(store, engineer_id="alice", replay=True).findings
        assert findings and findings[0].seq == 3 and findings[0].kind == "replay_mismatch"
        assert "amount_nanos" in findings[0].detail
