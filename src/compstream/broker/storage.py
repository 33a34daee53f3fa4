"""The broker's on-disk setup: server.properties, log4j2 config and the
one-time KRaft storage format."""

from __future__ import annotations

import base64
import re
import subprocess
import uuid
from pathlib import Path

from compstream.broker.jars import BrokerError

NODE_ID = 1


def new_cluster_id() -> str:
    # Kafka's Uuid.toString(): url-safe base64 of 16 random bytes, no padding.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # would be parsed as a CLI flag
            return cid


# -- config files ----------------------------------------------------------------

def server_properties(logs: Path, port: int, controller_port: int, partitions: int) -> str:
    return f"""# Written by compstream.broker.runtime on every start; edits are overwritten.
process.roles=broker,controller
node.id={NODE_ID}
controller.quorum.voters={NODE_ID}@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={logs}
num.partitions={partitions}
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Faust creates its changelog/repartition topics through the admin API; auto
# creation is only a safety net for clients that produce before creating.
auto.create.topics.enable=true
delete.topic.enable=true
"""


LOG4J = """# Broker logs go to stdout, which start() redirects to broker.log.
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
# The full config dump on every client/server start drowns the useful lines.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def format_storage(java: str, libs: Path, p: dict[str, Path], cluster_id: str) -> None:
    cmd = [java, f"-Dlog4j2.configurationFile={p['log4j']}", "-cp", f"{libs}/*",
           "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(p["props"])]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise BrokerError("formatting KRaft storage took over 120 s") from exc
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise BrokerError(f"formatting KRaft storage in {p['logs']} failed:\n{tail}")


def read_cluster_id(logs: Path) -> str | None:
    try:
        text = (logs / "meta.properties").read_text()
    except OSError:
        return None
    m = re.search(r"^cluster\.id=(\S+)", text, re.M)
    return m.group(1) if m else None
