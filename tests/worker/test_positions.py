"""The worker's own processed-position screen (pure)."""

from datetime import datetime, timezone

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


def test_a_real_gap_is_accepted_when_the_re_read_shows_it_again():
    guard = PositionGuard(lambda t, p: 10)
    assert guard.screen(msgs("u", 0, [12]))[1] == {("u", 0): 10}
    keep, seeks = guard.screen(msgs("u", 0, [12, 13]))  # after the seek: 10, 11 do not exist
    assert [m.offset for m in keep] == [12, 13] and seeks == {} and guard.gaps_accepted == 1


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
