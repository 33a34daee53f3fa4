"""Engines move bytes between Kafka and the checkpoint core (worker/core).

- `transactional`: confluent-kafka (librdkafka), one Kafka transaction per
  checkpoint (outputs, changelog, history rows and consumed offsets).
- `faust`: the original design (worker/engines/faust/app.py), at-least-once with its own
  position guard and idempotent outputs.
Chosen by COMPSTREAM_ENGINE (config.Settings.engine).
"""

ENGINES = ("faust", "transactional")
