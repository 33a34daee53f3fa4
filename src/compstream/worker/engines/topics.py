"""The topics an engine needs before it starts: the source and output
topics, the changelogs of its state, and the history topic."""

from __future__ import annotations

from compstream.config import Settings
from compstream.worker.core.checkpoint import history_topic


def ensure_engine_topics(settings: Settings) -> None:
    from compstream.broker.topics import FOREVER, TopicSpec, changelog_specs, ensure_specs, ensure_topics

    ensure_topics(settings.kafka_bootstrap, settings.topics, settings.source_partitions)
    specs = changelog_specs(settings.worker_id, settings.source_partitions)
    # Kept: a new store (or a wiped one) is loaded from it.
    specs[history_topic(settings.topics)] = TopicSpec(settings.source_partitions, dict(FOREVER))
    ensure_specs(settings.kafka_bootstrap, specs)
