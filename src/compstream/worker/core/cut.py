"""The cut of a batch, written before any of its outputs, so that a batch read
again after a crash is the same batch, judged the same way.

An engine without transactions (Faust) writes a checkpoint in waves:
outputs and history rows, then state, then positions. A crash after some
history rows are out but before the positions makes the batch be read again.
Whether an event is late depends on the batch it lands in: the watermark the
batch started with (stream time, and the HR inputs lagging behind it with
their topic times) and which messages it took. A re-read cut otherwise could
judge an event otherwise than the rows history already holds, and `audit
verify` would then find postings the events do not give.

So the first wave is one cut record per task partition of the batch (key:
`position_key(CUT_TOPIC, p)` in the books changelog): the range of offsets
it took from each source input, the stream time it started from and its
lagging inputs. A restore whose positions are still at a cut's start replays
exactly that batch (TaskInputs.take waits until the range is fetched;
LedgerCore.step checks the messages and starts them from the recorded
times). Positions past the start mean the state wave was complete: the
re-read holds only duplicates and the cut is not needed. A state wave that
began but did not finish leaves some books past the batch and others before
it: its first record per task partition (`encode_refusals`) says so, and
what the batch refused for its books' state is refused again. The transactional
engine never writes cuts: an aborted transaction leaves no rows behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import orjson

from compstream.worker.positions import position_key

CUT_TOPIC = "\x00cut"  # a pseudo topic: no topic name starts with NUL
REFUSED_TOPIC = "\x00refused"
# Dead-letter stages that depend on the book's state when the event came (a
# re-read against a book written by the first attempt could judge otherwise).
STATEFUL_STAGES = ("book_full", "too_old", "conflict")
CUT_VERSION = 1
# Logged (INFO) for each partition whose restore found its last batch to read again: tests count it.
REPLAY_LOG = "read again as it was cut"


class CutError(ValueError):
    """A cut record that cannot be read."""


def cut_key(partition: int) -> str:
    return position_key(CUT_TOPIC, partition)


def refused_key(partition: int) -> str:
    return position_key(REFUSED_TOPIC, partition)


# A refusal of a batch's first attempt: (source topic, offset, stage, reason).
Refusal = tuple[str, int, str, str]


def encode_refusals(ranges: Mapping[str, tuple[int, int]], refusals: list[Refusal]) -> bytes:
    """The head of a batch's state wave, per task partition: its cut's ranges
    and what it refused for its books' state (STATEFUL_STAGES). Found with a
    cut to read again, it says the state wave began, so books of the batch
    may be written already (past it): the re-read refuses these again, as
    the dead letters and history rows already out say, where such a book
    could now take them; and an event such a book holds no more (its day's
    ids forgotten for room) was applied by the first attempt."""
    return orjson.dumps({"v": CUT_VERSION, "ranges": {t: list(r) for t, r in sorted(ranges.items())},
                         "refused": [list(r) for r in refusals]})


def decode_refusals(partition: int, value: bytes) -> tuple[dict[str, tuple[int, int]], list[Refusal]]:
    try:
        data = orjson.loads(value)
        if data["v"] != CUT_VERSION:
            raise CutError(f"refusals record of partition {partition}: version {data['v']!r}")
        ranges = {str(t): (int(a), int(b)) for t, (a, b) in data["ranges"].items()}
        out = [(str(t), int(o), str(stage), str(reason)) for t, o, stage, reason in data["refused"]]
    except CutError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CutError(f"refusals record of partition {partition} is not readable ({exc}): {value[:200]!r}") from exc
    return ranges, out


@dataclass(frozen=True)
class Cut:
    partition: int
    # source topic -> (first offset, next offset after the batch's last message of it)
    ranges: Mapping[str, tuple[int, int]]
    stream_time_us: int | None  # the partition's stream time as the batch started
    lagging: Mapping[str, int | None]  # lagging source topic -> its topic time (µs) as the batch started

    def encode(self) -> bytes:
        return orjson.dumps({
            "v": CUT_VERSION,
            "ranges": {t: list(r) for t, r in sorted(self.ranges.items())},
            "stream_time_us": self.stream_time_us,
            "lagging": dict(sorted(self.lagging.items())),
        })

    @classmethod
    def decode(cls, partition: int, value: bytes) -> "Cut":
        try:
            data = orjson.loads(value)
            if data["v"] != CUT_VERSION:
                raise CutError(f"cut record of partition {partition}: version {data['v']!r}, "
                               f"this worker reads {CUT_VERSION}")
            ranges = {str(t): (int(a), int(b)) for t, (a, b) in data["ranges"].items()}
            stream = data["stream_time_us"]
            lagging = {str(t): None if v is None else int(v) for t, v in data["lagging"].items()}
        except CutError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CutError(f"cut record of partition {partition} is not readable ({exc}): {value[:200]!r}") from exc
        for topic, (start, end) in ranges.items():
            if not 0 <= start <= end:
                raise CutError(f"cut record of partition {partition}: range {start}..{end} of {topic!r}")
        return cls(partition, ranges, None if stream is None else int(stream), lagging)

    def pending(self, positions: Mapping[tuple[str, int], int]) -> bool:
        """The batch took messages and its positions were never written: it
        must be read again as it was."""
        p = self.partition
        return (any(end > start for start, end in self.ranges.values())
                and all(positions.get((t, p), 0) == start for t, (start, _) in self.ranges.items()))
