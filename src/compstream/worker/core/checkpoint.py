"""One batch in, one checkpoint out: the ledger step every engine shares.

`LedgerCore` holds the books of the assigned source partitions (serialized,
as in the changelog), each partition's stream time and the next offset per
source topic-partition. `step` runs the ordered batch protocol:
  screen (drop what an earlier checkpoint already holds)
  -> ledger (LedgerProcessor: decode or dead-letter, apply, sweep quiet books)
  -> outputs: changelog records of the touched books and stream times,
     balances, alerts, dead letters, history rows (history topic)
  -> the consumed offsets, also as position records in the changelog after
     the books (so positions live with the state they describe).
The transactional engine makes the checkpoint visible atomically (the position
records then equal the committed offsets); the Faust engine writes the
changelog last and the positions after the books, so a restore never has a
position ahead of its books. An engine that cannot commit throws this core
away and restores a new one from the changelog, so in-memory state never runs
ahead of what is committed. Once it has committed, it calls `committed()`:
only then does the web view (`view`, core/committed.py) show the step's books.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Sequence

from compstream.config import BOOK_CACHE_BOOKS_MAX, BOOK_CACHE_BYTES_MAX, USAGE_AHEAD_S_MAX, Topics
from compstream.domain.book_codec import from_us, to_us
from compstream.domain.events import Event
from compstream.domain.leaderboard import LeaderboardConfig, Pseudonymizer
from compstream.history.rows import HistoryBatch
from compstream.history.wire import encode_records
from compstream.worker.book_cache import BookCache
from compstream.worker.book_changelog import BookChangelog, is_segment_key
from compstream.worker.core.collector import collector_paused
from compstream.worker.core.committed import CommittedView, PartitionTimes
from compstream.worker.core.cut import (
    REPLAY_LOG,
    STATEFUL_STAGES,
    Cut,
    Refusal,
    cut_key,
    decode_refusals,
    encode_refusals,
    refused_key,
)
from compstream.worker.core.leaderboard_step import MERGE_POSITION_KEY, LeaderboardStep
from compstream.worker.core.ports import BatchStats, Checkpoint, OutRecord, TopicPartition, new_out_record
from compstream.worker.messages import Coord, SourceMessage, partition_of
from compstream.worker.positions import is_position_key, parse_offset, position_key, stream_time_key
from compstream.worker.processor import BATCH_MESSAGES_MAX, LedgerProcessor
from compstream.worker.recorded_late import RecordedDecisions

log = logging.getLogger(__name__)


def changelog_topic(worker_id: str) -> str:
    """The books changelog (the same layout the Faust engine's table writes)."""
    return f"{worker_id}-books-changelog"


def history_topic(topics: Topics) -> str:
    return f"{topics.prefix}.history"


@dataclass(frozen=True)
class CoreConfig:
    topics: Topics
    worker_id: str
    partitions: int
    lateness_s: int
    book_bytes_max: int
    leaderboards: LeaderboardConfig | None = None  # None: no leaderboards
    pseudonymizer: Pseudonymizer | None = None
    usage_ahead_s_max: int = USAGE_AHEAD_S_MAX  # usage dated further ahead of its record is refused
    book_cache_books_max: int = BOOK_CACHE_BOOKS_MAX  # live books kept between batches (worker/book_cache.py)
    book_cache_bytes_max: int = BOOK_CACHE_BYTES_MAX
    # The stream's decisions a rebuild takes again (worker/recorded_late.py),
    # and what to call once a commit has passed all of them (retire the file).
    recorded: RecordedDecisions | None = None
    on_recorded_spent: Callable[[], None] | None = None


class LedgerCore:
    def __init__(self, config: CoreConfig):
        self.config = config
        self.books: dict[str, bytes] = {}  # the working books: a step changes them before its commit
        self.view = CommittedView(lambda engineer: partition_of(engineer, config.partitions))
        self.positions: dict[TopicPartition, int] = {}
        self.owned: set[int] = set()
        self.processor = LedgerProcessor(config.lateness_s, load_book=self.books.get,
                                         partitions=config.partitions, book_bytes_max=config.book_bytes_max,
                                         usage_ahead_s_max=config.usage_ahead_s_max,
                                         book_cache=BookCache(config.book_cache_books_max,
                                                              config.book_cache_bytes_max),
                                         recorded=config.recorded)
        self.changelog = changelog_topic(config.worker_id)
        self.book_log = BookChangelog(self.changelog)
        self.history = history_topic(config.topics)
        self._stream_time_keys = {stream_time_key(p): p for p in range(config.partitions)}
        sources = (config.topics.usage, config.topics.grants)
        self._position_keys = {position_key(t, p): (t, p) for t in sources for p in range(config.partitions)}
        self._position_keys_raw = {k.encode() for k in self._position_keys} | {MERGE_POSITION_KEY.encode()}
        self._cut_keys = {cut_key(p): p for p in range(config.partitions)}
        self._refused_keys = {p: refused_key(p) for p in range(config.partitions)}
        self.sources = sources
        # partition -> the cut of a batch whose outputs may be out but whose
        # positions are not: the next batch must be exactly that one (core/cut.py)
        self.replay: dict[int, Cut] = {}
        # Steps made and checkpoints committed, and the step whose commit
        # passes every position a rebuild's decisions speak of.
        self._steps = self._commits = 0
        self._spent_after: int | None = None
        self.leaderboards = None if config.leaderboards is None else LeaderboardStep(
            config.leaderboards, config.topics, config.worker_id, config.partitions, self.history,
            config.pseudonymizer)

    # -- assignment ---------------------------------------------------------

    def changelogs(self, partition: int) -> list[str]:
        """The changelog topics a source partition's state is restored from."""
        out = [self.changelog]
        if self.leaderboards is not None:
            out.append(self.leaderboards.partition_changelog)
        return out

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]],
                positions: dict[TopicPartition, int],
                leaderboard_records: Iterable[tuple[bytes, bytes | None]] = ()) -> tuple[int, int]:
        """Load a partition's books, stream time and positions from its
        changelog (last value per key wins, None deletes) and its leaderboard
        records. `positions` (the group's committed offsets) count only where
        the changelog holds none: a position record is written with the books
        it describes, while a commit may run ahead of them (Faust commits
        offsets it skipped). Returns (books now held, changelog records read):
        the second is about the first when the changelog is compacted."""
        if self.leaderboards is not None:
            self.leaderboards.restore_partition(partition, leaderboard_records)
        stored: dict[TopicPartition, int] = {}
        count = 0
        keys: set[str] = set()  # the changelog partition holds exactly this partition's books
        segments: dict[str, bytes] = {}
        cut: bytes | None = None
        refused: bytes | None = None
        for raw_key, value in records:
            count += 1
            key = raw_key.decode("utf-8")
            if self._cut_keys.get(key) == partition:
                cut = value
                continue
            if key == self._refused_keys.get(partition):
                refused = value
                continue
            p = self._stream_time_keys.get(key)
            if p is not None:
                if value is not None:
                    us = parse_offset(key, value, f"books changelog partition {partition}", "a time in µs")
                    self.processor.restore_stream_time(p, from_us(us))
                continue
            tp = self._position_keys.get(key)
            if tp is not None:
                if value is not None:
                    stored[tp] = parse_offset(key, value, f"books changelog partition {partition}")
                continue
            if is_position_key(key):
                raise ValueError(f"changelog of partition {partition} holds an unknown position key {key!r}")
            if is_segment_key(key):
                if value is None:
                    segments.pop(key, None)
                else:
                    segments[key] = value
                continue
            keys.add(key)
            if value is None:
                self.books.pop(key, None)
            else:
                self.books[key] = value
        self.positions.update({**positions, **stored})
        self.processor.read_to = dict(self.positions)  # where a rebuild's expected places are checked
        self.owned.add(partition)
        self.replay.pop(partition, None)
        if refused is not None:
            # The head of the last batch's state wave: where its records will
            # be read again (its positions not all written), books of it may
            # be past it (core/cut.py, encode_refusals).
            ranges, refusals = decode_refusals(partition, refused)
            again = {(t, partition): end for t, (start, end) in ranges.items()
                     if start < end and self.positions.get((t, partition), 0) < end}
            if again:
                self.processor.state_begun.update(again)
                for topic, offset, stage, reason in refusals:
                    if offset < again.get((topic, partition), 0):
                        self.processor.refused_before[(topic, partition, offset)] = (stage, reason)
        if cut is not None:
            found = Cut.decode(partition, cut)
            if found.pending(self.positions):
                self.replay[partition] = found
                log.info("partition %d: the last batch's outputs may be out without its positions; it is %s (%s)",
                         partition, REPLAY_LOG,
                         ", ".join(f"{t}@{a}..{b}" for t, (a, b) in sorted(found.ranges.items())))
        # What this worker knew of these books may be stale (another worker held them meanwhile).
        self.processor.forget_books(keys)
        self.book_log.forget(list(keys))
        held = self.book_log.restore({k: self.books[k] for k in keys if k in self.books}, segments)
        self.books.update(held)
        self.view.restored(held, self._times((partition,)))
        return len(held), count

    def forget(self, partition: int) -> None:
        """A revoked partition: its books may move on under another worker."""
        self.owned.discard(partition)
        self.replay.pop(partition, None)
        n = self.config.partitions
        gone = [e for e in self.books if partition_of(e, n) == partition]
        for engineer in gone:
            del self.books[engineer]
        for tp in [tp for tp in self.positions if tp[1] == partition]:
            del self.positions[tp]
        self.view.forget(partition, gone)
        self.book_log.forget(gone)
        self.processor.stream_time.pop(partition, None)
        self.processor.swept_watermark.pop(partition, None)
        self.processor.forget_books(gone)
        self.processor.due.drop_partition(partition)
        self.processor.recorded_watermark.pop(partition, None)
        if self.leaderboards is not None:
            self.leaderboards.forget_partition(partition)

    def restore_merge(self, records: Iterable[tuple[bytes, bytes | None]],
                      positions: dict[TopicPartition, int]) -> None:
        if self.leaderboards is None:
            raise RuntimeError("leaderboards are off: no merge to restore")
        records = list(records)
        stored: dict[TopicPartition, int] = {}
        for key, value in records:  # last one wins
            if value is not None and key.decode("utf-8") == MERGE_POSITION_KEY:
                stored[(self.config.topics.leaderboard_candidates, 0)] = parse_offset(
                    MERGE_POSITION_KEY, value, "leaderboard merge changelog")
        self.leaderboards.restore_merge(records)
        self.view.restored_boards(self.leaderboards.merge.published_boards())
        self.positions.update({**positions, **stored})
        self.processor.read_to = dict(self.positions)  # where a rebuild's expected places are checked

    def forget_merge(self) -> None:
        if self.leaderboards is not None:
            self.leaderboards.forget_merge()
        self.view.forget_boards()
        self.positions.pop((self.config.topics.leaderboard_candidates, 0), None)

    def committed(self) -> None:
        """The engine made the oldest checkpoint not yet committed durable:
        the web view may show it (its books and the times its step ended with)."""
        self.view.publish()
        self._commits += 1
        if self._spent_after is not None and self._commits >= self._spent_after:
            # Committed past every source record the stream had judged (this
            # core owns them all): a rebuild's decisions are all taken.
            self._spent_after = None
            self.processor.forget_recorded()
            if self.config.on_recorded_spent is not None:
                self.config.on_recorded_spent()

    def _times(self, partitions: Iterable[int]) -> PartitionTimes:
        processor = self.processor
        return {p: (t, processor.watermark(p)) for p in partitions
                if (t := processor.stream_time.get(p)) is not None}

    # -- the batch ----------------------------------------------------------

    def step(self, messages: list[SourceMessage], lagging: Iterable[TopicPartition] = (),
             candidates: Sequence[SourceMessage] = (), idle: dict[int, datetime] | None = None) -> Checkpoint:
        """`idle`: partition -> wall-clock time for quiet partitions (the
        idleness rule): their stream time moves there and they are swept."""
        with collector_paused():  # the batch's objects die with the step (worker/core/collector.py)
            return self._step(messages, lagging, candidates, idle)

    def _step(self, messages: list[SourceMessage], lagging: Iterable[TopicPartition],
              candidates: Sequence[SourceMessage], idle: dict[int, datetime] | None) -> Checkpoint:
        if len(messages) > BATCH_MESSAGES_MAX:
            raise ValueError(f"batch of {len(messages)} exceeds {BATCH_MESSAGES_MAX}")
        stats = BatchStats(messages=len(messages))
        candidates = [m for m in candidates if m.offset >= self.positions.get((m.topic, m.partition), 0)]
        fresh = []
        offsets: dict[TopicPartition, int] = {}
        owned, positions = self.owned, self.positions
        for m in messages:
            if m.partition not in owned:
                raise RuntimeError(f"message of {m.topic}:{m.partition} whose partition is not restored")
            tp = (m.topic, m.partition)
            if m.offset < positions.get(tp, 0):
                stats.stale += 1
                continue
            fresh.append(m)
            offsets[tp] = m.offset + 1
        for m in candidates:
            offsets[(m.topic, m.partition)] = m.offset + 1
        lagging = frozenset(lagging)
        if self.replay:
            # A partition waiting for its re-read is not quiet.
            idle = {p: t for p, t in (idle or {}).items() if p not in self.replay}
            if fresh:
                lagging = self._start_replay(fresh, lagging)
        cuts = self._cut_records(offsets, lagging)
        records: list[OutRecord] = []
        refusals: list[OutRecord] = []
        counted: list[SourceMessage] = []
        decoded: dict[Coord, Event] = {}
        advanced = [p for p, t in sorted((idle or {}).items())
                    if p in self.owned and self.processor.advance_stream_time(p, t)]
        if fresh or advanced:
            result = self.processor.process(fresh, keys=self.books.keys, sweep=True,
                                            lagging=lagging, lagging_after=lagging, also_sweep=advanced)
            stats.applied, stats.duplicates, stats.swept = result.applied, result.duplicates, result.swept
            stats.dead_letters = len(result.dead_letters)
            topics, changelog, books, stage = self.config.topics, self.changelog, self.books, self.view.stage
            sealed, parts, book_log = result.sealed, result.parts, self.book_log
            book_bytes = more_records = 0
            for engineer, (data, p) in result.books.items():
                books[engineer] = data
                stage(engineer, data)
                if engineer in sealed or engineer in parts or book_log.holds(engineer):  # a head and segments
                    days, changed = sealed.get(engineer, (frozenset(), set()))
                    written = book_log.records(engineer, data, p, days, changed, parts.get(engineer))
                    records += written
                    more_records += len(written) - 1
                    book_bytes += sum(len(r.value) for r in written if r.value is not None)
                else:
                    records.append(new_out_record(changelog, engineer.encode(), data, p))
                    book_bytes += len(data)
            stats.book_records, stats.book_bytes = len(result.books) + more_records, book_bytes
            for p in sorted({m.partition for m in fresh} | set(advanced)):
                t = self.processor.stream_time.get(p)
                if t is not None:
                    records.append(OutRecord(self.changelog, stream_time_key(p).encode(),
                                             str(to_us(t)).encode(), p))
            balances = topics.balances
            records += [new_out_record(balances, e.encode(), v, None) for e, v in result.balances]
            records += [OutRecord(topics.alerts, e.encode(), v) for e, v in result.alerts]
            records += [OutRecord(topics.dead_letters, k, v) for k, v in result.dead_letters]
            for batch in result.history:
                stats.history_rows += batch.row_count()
                records += self._history_records(batch)
            refusals = self._refusal_records(offsets, result.history)
            decoded, not_applied = result.decoded, result.not_applied
            # decoded holds the fresh messages that decoded, in order: those
            # not in not_applied are the counted ones with an event.
            by_type = stats.applied_by_type
            for coord, event in decoded.items():
                if coord not in not_applied:
                    by_type[event.type] = by_type.get(event.type, 0) + 1
            if self.leaderboards is not None:
                counted = [m for m in fresh if (m.topic, m.partition, m.offset) not in not_applied]
        if self.leaderboards is not None:
            boards = self.config.topics.leaderboards
            for r in self.leaderboards.step(counted, decoded, candidates):
                if r.topic == boards:
                    self.view.stage_board(r.key, r.value)
                records.append(r)
        records += self._position_records(offsets)
        self.positions.update(offsets)
        begun = self.processor.state_begun
        if begun:  # read again past a batch whose state wave began: its books are their own again
            for tp in [tp for tp, end in begun.items() if self.positions.get(tp, 0) >= end]:
                del begun[tp]
        self.view.seal(self._times(self.owned))
        self._steps += 1
        if self._spent_after is None and self.processor.judged_to and all(
                self.positions.get(tp, 0) >= offset for tp, offset in self.processor.judged_to.items()):
            self._spent_after = self._steps  # spent once this checkpoint is committed
        return Checkpoint(records=records, offsets=offsets, stats=stats, cuts=cuts, refusals=refusals)

    def _refusal_records(self, offsets: dict[TopicPartition, int],
                         history: Sequence[HistoryBatch]) -> list[OutRecord]:
        """One record per task partition the batch takes messages from (as
        its cut): its ranges and what it refused for its books' state
        (core/cut.py, encode_refusals). Positions are not updated yet."""
        found: dict[int, list[Refusal]] = {}
        for batch in history:
            for d in batch.dead_letters:
                if d.stage in STATEFUL_STAGES:
                    found.setdefault(d.kafka_partition, []).append((d.kafka_topic, d.kafka_offset, d.stage, d.error))
        out = []
        begun, before = self.processor.state_begun, self.processor.refused_before
        for p in sorted({p for t, p in offsets if t in self.sources}):
            ranges = {}
            for t in self.sources:
                start = self.positions.get((t, p), 0)
                # A batch read again in parts: what the earlier batch's record
                # says past this one still holds (a crash now must not lose it).
                ranges[t] = (start, max(offsets.get((t, p), start), begun.get((t, p), 0)))
            rows = found.get(p, [])
            if begun:
                taken = {(t, o) for t, o, _, _ in rows}
                rows += [(t, o, stage, reason) for (t, q, o), (stage, reason) in sorted(before.items())
                         if q == p and o >= offsets.get((t, p), 0) and (t, o) not in taken]
            out.append(OutRecord(self.changelog, refused_key(p).encode(), encode_refusals(ranges, rows), p))
        return out

    def _cut_records(self, offsets: dict[TopicPartition, int],
                     lagging: frozenset[TopicPartition]) -> list[OutRecord]:
        """One cut record per task partition the batch takes fresh messages
        from (`offsets`: theirs, and the candidates'), with what its verdicts
        depend on as the batch starts (core/cut.py)."""
        out = []
        stream, topic_time, positions = self.processor.stream_time, self.processor.topic_time, self.positions
        for p in sorted({p for t, p in offsets if t in self.sources}):
            ranges = {}
            for t in self.sources:
                start = positions.get((t, p), 0)
                ranges[t] = (start, offsets.get((t, p), start))
            started = stream.get(p)
            lag = {t: (to_us(topic_time[(t, q)]) if (t, q) in topic_time else None)
                   for t, q in sorted(lagging) if q == p}
            cut = Cut(p, ranges, None if started is None else to_us(started), lag)
            out.append(OutRecord(self.changelog, cut_key(p).encode(), cut.encode(), p))
        return out

    def _start_replay(self, fresh: list[SourceMessage],
                      lagging: frozenset[TopicPartition]) -> frozenset[TopicPartition]:
        """The batch read again after a crash: it must be exactly its cut
        (TaskInputs.take gives it so), and starts from the cut's times and
        lagging inputs. Returns the lagging set to step with."""
        replay = self.replay
        next_of: dict[TopicPartition, int] = {}
        for m in fresh:
            if m.partition not in replay:
                raise RuntimeError(f"a batch with {m.topic}:{m.partition} while partitions {sorted(replay)} "
                                   "wait for the re-read of their cut")
            next_of[(m.topic, m.partition)] = m.offset + 1
        for p, cut in replay.items():
            for t, (start, end) in cut.ranges.items():
                if next_of.get((t, p), start) != end:
                    raise RuntimeError(f"the re-read of {t}:{p} ends at {next_of.get((t, p), start)}, "
                                       f"its recorded cut at {end}")
        lag = set(lagging) - {(t, p) for p in replay for t in self.sources}
        stream, topic_time = self.processor.stream_time, self.processor.topic_time
        for p, cut in replay.items():
            if cut.stream_time_us is None:
                stream.pop(p, None)
            else:
                stream[p] = from_us(cut.stream_time_us)
            for t, us in cut.lagging.items():
                lag.add((t, p))
                if us is None:
                    topic_time.pop((t, p), None)
                else:
                    topic_time[(t, p)] = from_us(us)
        replay.clear()
        return frozenset(lag)

    def waves(self, checkpoint: Checkpoint) -> tuple[list[OutRecord], list[OutRecord], list[OutRecord],
                                                     list[OutRecord]]:
        """For an engine without transactions: (cuts, outputs, state,
        positions), each to be written only once the one before is
        delivered, so a crash leaves positions behind the state and outputs
        they vouch for, and a batch read again is cut as it was (core/cut.py)."""
        changelogs = set(self.changelogs(0))
        if self.leaderboards is not None:
            changelogs.add(self.leaderboards.merge_changelog)
        outputs, positions = [], []
        state = list(checkpoint.refusals)  # before the books they hold for
        for r in checkpoint.records:
            if r.topic not in changelogs:
                outputs.append(r)
            elif r.key in self._position_keys_raw:
                positions.append(r)
            else:
                state.append(r)
        return checkpoint.cuts, outputs, state, positions

    def _position_records(self, offsets: dict[TopicPartition, int]) -> list[OutRecord]:
        """The next offset per consumed topic-partition, after every other
        record of the checkpoint: source positions in the books changelog
        (the task's partition), the candidates position in the merge changelog."""
        out = []
        candidates = self.config.topics.leaderboard_candidates
        for (topic, p), offset in sorted(offsets.items()):
            if topic == candidates:
                if self.leaderboards is None:
                    raise RuntimeError("a candidates offset with leaderboards off")
                out.append(OutRecord(self.leaderboards.merge_changelog, MERGE_POSITION_KEY.encode(),
                                     str(offset).encode(), 0))
            else:
                out.append(OutRecord(self.changelog, position_key(topic, p).encode(), str(offset).encode(), p))
        return out

    def _history_records(self, batch: HistoryBatch) -> list[OutRecord]:
        """Rows split by source partition (events and dead letters by their
        Kafka partition, postings by their engineer's), one history topic
        partition each: a loader then sees each partition's rows in order."""
        n = self.config.partitions
        events: dict[int, list[Any]] = defaultdict(list)
        for e in batch.events:
            events[e.kafka_partition].append(e)
        dead: dict[int, list[Any]] = defaultdict(list)
        for d in batch.dead_letters:
            dead[d.kafka_partition].append(d)
        postings: dict[int, list[Any]] = defaultdict(list)
        cache = self.processor.partition_cache  # murmur2 in Python: ~1 µs a posting uncached
        for posting in batch.postings:
            p = cache.get(posting.engineer_id)
            if p is None:
                p = cache[posting.engineer_id] = partition_of(posting.engineer_id, n)
            postings[p].append(posting)
        marks: dict[int, list[Any]] = defaultdict(list)
        for w in batch.watermarks:  # after the postings they vouch for (the last table of a record)
            marks[w.partition].append(w)
        out = []
        for p in sorted(events.keys() | dead.keys() | postings.keys() | marks.keys()):
            piece = HistoryBatch(events=tuple(events.get(p, ())), postings=tuple(postings.get(p, ())),
                                 dead_letters=tuple(dead.get(p, ())), watermarks=tuple(marks.get(p, ())))
            out += [new_out_record(self.history, str(p).encode(), data, p) for data in encode_records(piece)]
        return out

