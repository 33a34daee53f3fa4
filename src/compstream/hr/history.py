"""Prior events for the HR commands: an event log (JSON Lines) or the Kafka source topics.

`hr import` needs the grants topic only (which engineers and grants exist,
which event ids were published); `grants issue` needs the grants topic, and
the usage topic too when a rule rolls budget over (the unused amount comes
from an offline replay). Reads are bounded by the end offsets seen at the
start (replay/kafka_source.py), so they terminate on a live topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from compstream.config import Settings
from compstream.domain.events import Event


class HistoryError(RuntimeError):
    pass


@dataclass
class Prior:
    events: list[Event] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)  # unreadable lines / messages, with where
    source: str = ""

    def by_engineer(self) -> dict[str, list[Event]]:
        out: dict[str, list[Event]] = {}
        for e in self.events:
            out.setdefault(e.engineer_id, []).append(e)
        return out


def from_files(paths: list[Path]) -> Prior:
    from compstream.replay.file import read_jsonl

    prior = Prior(source="files " + ", ".join(map(str, paths)))
    try:
        prior.events = list(read_jsonl(paths, lambda bad: prior.bad.append(str(bad))))
    except OSError as exc:
        raise HistoryError(f"cannot read the event log: {exc}") from exc
    return prior


def from_kafka(settings: Settings, *, usage: bool, on_record: Callable[[], None] | None = None) -> Prior:
    from compstream.replay.kafka_source import SourceError, open_consumer, resolve_ranges, source_events

    topics = [settings.topics.grants] + ([settings.topics.usage] if usage else [])
    prior = Prior(source=f"Kafka {settings.kafka_bootstrap} ({', '.join(topics)})")
    try:
        consumer = open_consumer(settings.kafka_bootstrap)
        try:
            ranges = resolve_ranges(consumer, topics)
            prior.events = list(source_events(consumer, ranges, lambda bad: prior.bad.append(str(bad)),
                                              on_record=on_record))
        finally:
            consumer.close()
    except SourceError as exc:
        raise HistoryError(f"{exc} (or give the prior events as a file: --events FILE)") from exc
    return prior
