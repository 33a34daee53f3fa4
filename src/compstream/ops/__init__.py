"""SRE tooling: replay from Kafka or history, diff, rebuild, dead-letter queue.

The modules here are used by `compstream replay/diff/rebuild/dlq` (see
docs/runbook.md). They only read the source topics and the history; the one
write path into the event store is `dlq redrive`, which appends (never edits).
"""
