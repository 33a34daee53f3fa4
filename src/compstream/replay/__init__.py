"""Reading the event log back: `compstream replay` and its sources.

- `file`, `jsonl_fast`: JSON Lines input (the fast line parser, bad lines with
  their file and line), `parallel`: the same over worker processes (`--jobs`);
- `kafka_source`: ranges of the source topics (also used by diff, rebuild, dlq);
- `history_source`: the events table of the history store;
- `sources`: the Kafka and history sources as one interface for the CLI.

The fold itself is pure domain logic and stays in `compstream.domain.replay`;
the command-line glue is `compstream.cli.replay_cmd`.
"""
