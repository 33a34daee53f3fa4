"""The worker's own processed-position screen (pure)."""

from datetime import datetime, timezone

import pytest

from compstream.worker.positions import PositionGuard, is_position_key, position_key
from compstream.worker.processor import SourceMessage

T = datetime(2026, 10, 1, tzinfo=timezone.utc)


def msgs(topic, partition, offsets):
    return [SourceMessage(topic, partition, o, b"k", b"v", T) for o in offsets]


def test_in_order_messages_pass_and_advance():
    guard = PositionGuard(lambda t, p: 0)
    keep, seeks = guard.screen(msgs("u", 0, [0, 1, 2]))
    assert [m.offset for m in keep] == [0, 1, 2] and seeks == {}
    assert guard.next[("u", 0)] == 3


def test_already_processed_offsets_are_dropped():
    guard = PositionGuard(lambda t, p: 5)
    keep, seeks = guard.screen(msgs("u", 0, [3, 4, 5, 6]))
    assert [m.offset for m in keep] == [5, 6] and seeks == {} and guard.stale == 2


def test_a_skipped_range_is_re_read():
    guard = PositionGuard(lambda t, p: 10)
    keep, seeks = guard.screen(msgs("u", 0, [13, 14]) + msgs("g", 1, [10]))
    assert [(m.topic, m.offset) for m in keep] == [("g", 10)]
    assert seeks == {("u", 0): 10}
    # Stale buffered messages beyond the gap keep the partition waiting …
    keep, seeks = guard.screen(msgs("u", 0, [15]))
    assert keep == [] and seeks == {("u", 0): 10}
    # … until the re-read arrives from the expected offset.
    keep, seeks = guard.screen(msgs("u", 0, [10, 11, 12, 13, 14, 15]))
    assert [m.offset for m in keep] == [10, 11, 12, 13, 14, 15] and seeks == {}


def test_a_real_gap_is_accepted_only_when_every_re_read_shows_it():
    from compstream.worker.positions import GAP_READS_TO_ACCEPT

    guard = PositionGuard(lambda t, p: 10)
    assert guard.screen(msgs("u", 0, [12]))[1] == {("u", 0): 10}
    for _ in range(GAP_READS_TO_ACCEPT - 2):  # the same gap again: not yet believed
        keep, seeks = guard.screen(msgs("u", 0, [12, 13]))
        assert keep == [] and seeks == {("u", 0): 10} and guard.gaps_accepted == 0
    keep, seeks = guard.screen(msgs("u", 0, [12, 13]))  # 10 and 11 do not exist
    assert [m.offset for m in keep] == [12, 13] and seeks == {} and guard.gaps_accepted == 1
    assert guard.gaps_sought == GAP_READS_TO_ACCEPT - 1


def test_a_re_read_that_shows_another_gap_starts_the_count_again():
    from compstream.worker.positions import GAP_READS_TO_ACCEPT

    guard = PositionGuard(lambda t, p: 10)
    guard.screen(msgs("u", 0, [12]))
    for _ in range(GAP_READS_TO_ACCEPT - 2):
        guard.screen(msgs("u", 0, [12]))
    # A different first offset (e.g. a buffered later message): not the same
    # gap, so it is sought again rather than accepted …
    assert guard.screen(msgs("u", 0, [14]))[1] == {("u", 0): 10}
    # … and the re-read delivers what was really there.
    keep, seeks = guard.screen(msgs("u", 0, [10, 11, 12]))
    assert [m.offset for m in keep] == [10, 11, 12] and guard.gaps_accepted == 0


def test_nothing_known_accepts_the_first_offset_and_forget_reloads():
    stored = {("u", 0): None}
    guard = PositionGuard(lambda t, p: stored[(t, p)])
    keep, _ = guard.screen(msgs("u", 0, [7]))
    assert [m.offset for m in keep] == [7]
    stored[("u", 0)] = 20  # another worker moved the partition on
    guard.forget()
    keep, _ = guard.screen(msgs("u", 0, [8, 20]))
    assert [m.offset for m in keep] == [20]


def test_position_keys_cannot_collide_with_engineer_ids():
    key = position_key("compstream.usage", 3)
    assert is_position_key(key) and not is_position_key("eng-00001")


def test_idle_partition_below_high_water_is_sought_back_with_backoff():
    from compstream.worker.positions import STALL_RETRY_FIRST_S, STALL_RETRY_MAX_S, stalled_seeks

    sought = {}
    # usage 0: tail skipped (expected 3, high water 9); usage 1 caught up;
    # grants 0: high water unknown yet.
    expected = {("u", 0): 3, ("u", 1): 7, ("g", 0): 0}
    highwater = {("u", 0): 9, ("u", 1): 7, ("g", 0): None}
    assert stalled_seeks(expected, highwater, sought, now_s=0.0) == {("u", 0): 3}
    # Unchanged right after the seek: wait before seeking again …
    assert stalled_seeks(expected, highwater, sought, now_s=STALL_RETRY_FIRST_S - 0.1) == {}
    # … but never give up (a rebalance may have skipped the re-read again),
    # at doubling intervals up to the cap.
    assert stalled_seeks(expected, highwater, sought, now_s=STALL_RETRY_FIRST_S) == {("u", 0): 3}
    now_s, retries = STALL_RETRY_FIRST_S, [STALL_RETRY_FIRST_S]
    for _ in range(400):
        now_s += 1.0
        if stalled_seeks(expected, highwater, sought, now_s):
            retries.append(now_s)
    gaps = [b - a for a, b in zip(retries, retries[1:], strict=False)]
    assert gaps[:3] == [2 * STALL_RETRY_FIRST_S, 4 * STALL_RETRY_FIRST_S, 8 * STALL_RETRY_FIRST_S]
    assert max(gaps) == STALL_RETRY_MAX_S and gaps[-1] == STALL_RETRY_MAX_S
    assert sought[("u", 0)][4] == 1 + len(retries)  # attempts, for the log
    # New messages (higher high water) with the same expected: seek at once.
    assert stalled_seeks(expected, {**highwater, ("u", 0): 10}, sought, now_s) == {("u", 0): 3}
    # Caught up: forgotten, so a later stall is sought again at once.
    assert stalled_seeks({("u", 0): 10}, {("u", 0): 10}, sought, now_s) == {}
    assert ("u", 0) not in sought
    assert stalled_seeks({("u", 0): 10}, {("u", 0): 12}, sought, now_s) == {("u", 0): 10}


def test_activity_reports_idle_time_only_between_batches():
    from compstream.worker.engines.faust.compat import Activity

    now = [100.0]
    activity = Activity(lambda: now[0])
    now[0] = 104.0
    assert activity.idle_for_s() == 4.0
    activity.start()
    now[0] = 200.0
    assert activity.idle_for_s() is None
    activity.stop()
    now[0] = 201.5
    assert activity.idle_for_s() == 1.5


def test_expected_uses_memory_only_while_current():
    guard = PositionGuard(lambda t, p: 4)
    guard.screen(msgs("u", 0, [4, 5, 6]))
    assert guard.expected("u", 0, current=True) == 7
    assert guard.expected("u", 0, current=False) == 4  # after a rebalance: the stored one
    assert guard.expected("u", 1, current=True) == 4  # never screened: the stored one


def test_seek_lowers_fausts_read_offset_again_when_its_fetch_loop_raised_it():
    import asyncio

    from faust.types import TP

    from compstream.worker.engines.faust.compat import seek

    tp = TP("u", 0)

    class Consumer:
        def __init__(self, fail=False):
            self._read_offset = {tp: 40}
            self.fail = fail

        async def seek_wait(self, partitions):
            if self.fail:
                raise KeyError(tp)  # e.g. revoked meanwhile
            self._read_offset[tp] = partitions[tp]  # what Faust's seek_wait does …
            await asyncio.sleep(0)
            self._read_offset[tp] = 41  # … and its fetch loop resuming after it

    class App:
        def __init__(self, consumer):
            self.consumer = consumer

    app = App(Consumer())
    asyncio.run(seek(app, tp, 30))
    assert app.consumer._read_offset[tp] == 30  # the re-read from 30 is not dropped
    failed = App(Consumer(fail=True))
    asyncio.run(seek(failed, tp, 30))
    assert failed.consumer._read_offset[tp] == 40  # no seek happened: nothing to lower


def test_stored_positions_are_the_last_position_record_of_each_source_partition():
    from compstream.worker.positions import stored_positions

    records = [(position_key("u", 0).encode(), b"5"), (b"eng-1", b"book"), (position_key("u", 0).encode(), b"9"),
               (position_key("g", 1).encode(), b"3"), (position_key("g", 1).encode(), None),
               (position_key("other", 0).encode(), b"7"), (None, b"x")]
    assert stored_positions(records, ("u", "g"), 2) == {("u", 0): 9}


def test_a_position_record_that_holds_no_offset_is_named_not_a_traceback():
    """rebuild reads these records: a malformed one stops it with the record's
    key and value (RebuildError), before anything is deleted."""
    from compstream.worker.positions import PositionRecordError, parse_offset, stored_positions

    assert parse_offset("k", b"12", "partition 0") == 12
    for bad in (b"", b"x1", b"-3", b"1.5"):
        with pytest.raises(PositionRecordError, match="not an offset"):
            stored_positions([(position_key("u", 0).encode(), bad)], ("u",), 1)


def test_a_restore_names_a_stream_time_or_merge_record_that_holds_no_number():
    """The stream time's record and the leaderboard merge's position are read
    as the offsets are: a malformed one is a named error, not a bare
    ValueError from int()."""
    from compstream.config import BOOK_BYTES_MAX, Topics
    from compstream.worker.core.checkpoint import MERGE_POSITION_KEY, CoreConfig, LedgerCore
    from compstream.worker.positions import PositionRecordError, stream_time_key

    core = LedgerCore(CoreConfig(Topics.with_prefix("pos"), "w", 2, 3600, BOOK_BYTES_MAX))
    good = [(stream_time_key(1).encode(), b"1790000000000000")]
    assert core.restore(1, good, {}) == (0, 1)
    for bad in (b"", b"soon", b"-5"):
        with pytest.raises(PositionRecordError, match=r"books changelog partition 1: .* not a time in µs"):
            core.restore(1, [(stream_time_key(1).encode(), bad)], {})
    lb = LedgerCore(CoreConfig(Topics.with_prefix("pos"), "w", 2, 3600, BOOK_BYTES_MAX, leaderboards=True))
    with pytest.raises(PositionRecordError, match="leaderboard merge changelog: .* not an offset"):
        lb.restore_merge([(MERGE_POSITION_KEY.encode(), b"x")], {})
