"""A batch's cut (core/cut.py): its record, when a restore reads it as
pending, how TaskInputs hands the batch back whole and in order, and the
core refusing a re-read that is not the recorded batch."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore
from compstream.worker.core.cut import Cut, CutError, cut_key
from compstream.worker.core.sync import REPLAY_WAIT_S_MAX, TaskInputs
from compstream.worker.messages import SourceMessage
from compstream.worker.positions import position_key

TOPICS = Topics.with_prefix("cut")
U, G = TOPICS.usage, TOPICS.grants
T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)


def _msg(topic: str, partition: int, offset: int) -> SourceMessage:
    return SourceMessage(topic, partition, offset, b"k", b"v", T0)


def _cut(partition: int = 0, usage=(0, 3), grants=(0, 2), lagging=None) -> Cut:
    return Cut(partition, {U: usage, G: grants}, 1_000_000, lagging or {})


def test_a_cut_record_reads_back_as_written():
    cut = _cut(lagging={G: 123})
    assert Cut.decode(0, cut.encode()) == cut
    assert Cut.decode(0, Cut(0, {U: (5, 5), G: (2, 4)}, None, {G: None}).encode()).stream_time_us is None


@pytest.mark.parametrize("value", [b"", b"{}", b'{"v": 9, "ranges": {}, "stream_time_us": null, "lagging": {}}',
                                   b'{"v": 1, "ranges": {"t": [5, 2]}, "stream_time_us": null, "lagging": {}}',
                                   b'{"v": 1, "ranges": {"t": "x"}, "stream_time_us": null, "lagging": {}}'])
def test_an_unreadable_cut_record_is_an_error_naming_its_partition(value):
    with pytest.raises(CutError, match="partition 3"):
        Cut.decode(3, value)


def test_a_cut_is_pending_only_while_its_positions_are_at_its_start():
    cut = _cut(usage=(10, 13), grants=(4, 4))
    assert cut.pending({(U, 0): 10, (G, 0): 4})
    assert not cut.pending({(U, 0): 13, (G, 0): 4})  # positions written: the state was complete
    assert not cut.pending({(U, 0): 11, (G, 0): 4})
    assert not Cut(0, {U: (7, 7), G: (4, 4)}, None, {}).pending({(U, 0): 7, (G, 0): 4})  # took nothing


def test_take_gives_the_cut_whole_and_in_take_order_once_it_is_fetched():
    inputs = TaskInputs(U, G, idle_s=0)
    replay = {0: _cut(usage=(0, 3), grants=(0, 2)), 1: _cut(1, usage=(0, 1), grants=(0, 0))}
    for m in [_msg(U, 0, 0), _msg(U, 0, 1), _msg(G, 0, 0), _msg(U, 1, 0)]:
        inputs.add(m)
    assert inputs.take(100, 0.0, replay) == []  # usage 0 and grants 0 not fetched to their ends
    assert not inputs.over_bound(U, 0, replay)
    for m in [_msg(U, 0, 2), _msg(U, 0, 3), _msg(G, 0, 1), _msg(G, 0, 2)]:
        inputs.add(m)
    got = [(m.topic, m.partition, m.offset) for m in inputs.take(1, 1.0, replay)]  # the limit is the cut's
    assert got == [(G, 0, 0), (G, 0, 1), (U, 0, 0), (U, 0, 1), (U, 0, 2), (U, 1, 0)]
    assert replay  # the core clears it when it steps the batch
    replay.clear()  # (as the core does) then what is past the cut is the next batch's
    assert [(m.topic, m.offset) for m in inputs.take(100, 2.0, replay)] == [(G, 2), (U, 3)]


def test_an_input_still_fetching_its_cut_is_never_paused():
    inputs = TaskInputs(U, G, idle_s=0, buffer_messages_max=2)
    replay = {0: _cut(usage=(0, 5), grants=(0, 0))}
    for offset in range(3):
        inputs.add(_msg(U, 0, offset))
    assert inputs.over_bound(U, 0) and not inputs.over_bound(U, 0, replay)
    for offset in range(3, 5):
        inputs.add(_msg(U, 0, offset))
    assert inputs.over_bound(U, 0, replay)  # the range is in: the bound holds again


def test_a_cut_never_fetched_is_given_up_after_the_bound(caplog):
    inputs = TaskInputs(U, G, idle_s=0)
    replay = {0: _cut()}
    inputs.add(_msg(U, 0, 0))
    assert inputs.take(10, 100.0, replay) == []
    assert inputs.take(10, 100.0 + REPLAY_WAIT_S_MAX - 1, replay) == [] and replay
    assert inputs.take(10, 100.0 + REPLAY_WAIT_S_MAX, replay) == []
    assert replay == {} and "going on without it" in caplog.text
    inputs.add(_msg(G, 0, 0))  # then batches as usual: HR first (idle_s=0: usage does not wait)
    assert [(m.topic, m.offset) for m in inputs.take(10, 200.0 + REPLAY_WAIT_S_MAX)] == [(G, 0), (U, 0)]


def _core_with_cut(cut: Cut) -> LedgerCore:
    core = LedgerCore(CoreConfig(TOPICS, "w", 2, 3600, BOOK_BYTES_MAX))
    records = [(position_key(U, 0).encode(), b"0"), (position_key(G, 0).encode(), b"0"),
               (cut_key(0).encode(), cut.encode())]
    core.restore(0, records, {})
    return core


def test_a_restore_at_the_cut_start_holds_it_and_a_later_position_does_not():
    cut = _cut()
    assert _core_with_cut(cut).replay == {0: cut}
    core = LedgerCore(CoreConfig(TOPICS, "w", 2, 3600, BOOK_BYTES_MAX))
    core.restore(0, [(cut_key(0).encode(), cut.encode()), (position_key(U, 0).encode(), b"3"),
                     (position_key(G, 0).encode(), b"2")], {})
    assert core.replay == {}


def test_the_core_refuses_a_re_read_that_is_not_the_cut():
    core = _core_with_cut(_cut(usage=(0, 3), grants=(0, 2)))
    with pytest.raises(RuntimeError, match="recorded cut"):
        core.step([_msg(G, 0, 0), _msg(G, 0, 1), _msg(U, 0, 0), _msg(U, 0, 1)])  # one short
    core = _core_with_cut(_cut(usage=(0, 1), grants=(0, 0)))
    core.restore(1, [], {})
    with pytest.raises(RuntimeError, match="wait for the re-read"):
        core.step([_msg(U, 1, 0)])
