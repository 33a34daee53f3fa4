"""The real local Kafka broker: lifecycle, client round trips, topic configs, errors."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from typer.testing import CliRunner

from compstream.broker import runtime
from compstream.broker.jars import BrokerError
from compstream.broker.topics import ensure_topics
from compstream.cli.main import app
from compstream.config import Topics
from support.kafka import free_port

pytestmark = pytest.mark.kafka


def _pid_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _jvms_using(data_dir: Path, settle_s: float = 2.0) -> list[int]:
    """Pids of live JVMs whose command line names this data dir (leak detector)."""
    time.sleep(settle_s)  # let a JVM that missed its signal show itself
    needle = str(data_dir.resolve()).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"kafka.Kafka" in cmdline and needle in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


# -- lifecycle -----------------------------------------------------------------------

def test_start_status_stop_restart(tmp_path: Path) -> None:
    data = tmp_path / "kafka"
    port = free_port()
    info = runtime.start(data, port=port, controller_port=free_port(), partitions=1)
    try:
        assert info.bootstrap == f"127.0.0.1:{port}"
        assert not info.already_running
        assert (data / "broker.pid").read_text().strip() == str(info.pid)
        assert (data / "logs" / "meta.properties").is_file()
        st = runtime.status(data)
        assert st.running and st.ready and st.pid == info.pid and st.version == info.version

        again = runtime.start(data, port=port)
        assert again.already_running and again.pid == info.pid
        with pytest.raises(BrokerError, match="already runs on port"):
            runtime.start(data, port=free_port())

        # A topic created now must survive a restart: storage is formatted once.
        topic = f"lifecycle-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=info.bootstrap)
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
        admin.close()
    finally:
        assert runtime.stop(data) is True
    assert _pid_gone(info.pid)
    assert not (data / "broker.pid").exists()
    assert _jvms_using(data, settle_s=0) == []
    st = runtime.status(data)
    assert not st.running and not st.ready
    assert runtime.stop(data) is False  # not running: a no-op

    info2 = runtime.start(data, port=port, controller_port=info.controller_port)
    try:
        admin = KafkaAdminClient(bootstrap_servers=info2.bootstrap)
        assert topic in admin.list_topics()
        admin.close()
    finally:
        runtime.stop(data)


def test_cli_stop_and_status_when_not_running(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["broker", "stop", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "not running" in res.output
    res = runner.invoke(app, ["broker", "status", "--data-dir", str(tmp_path)])
    assert res.exit_code == 3
    assert "not running" in res.output


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is already in use"):
            runtime.start(tmp_path, port=port, controller_port=free_port())
    assert not (tmp_path / "broker.pid").exists()


def test_readiness_timeout_reports_log_tail_and_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="did not become ready") as exc:
        runtime.start(tmp_path, port=free_port(), controller_port=free_port(), timeout_s=0.01)
    assert "broker.log" in str(exc.value)
    assert runtime.status(tmp_path).running is False
    assert _jvms_using(tmp_path) == []


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(BrokerError, match="Java is not on PATH"):
        runtime.start(tmp_path / "kafka", port=free_port())

    res = CliRunner().invoke(app, ["broker", "start", "--data-dir", str(tmp_path / "kafka"),
                                   "--port", str(free_port())])
    assert res.exit_code == 1
    assert "Java is not on PATH" in res.output
    assert "Traceback" not in res.output


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only java on PATH and an empty jar cache: ensure_jars must ask for Maven.
    import shutil

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "java").symlink_to(shutil.which("java"))
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("COMPSTREAM_KAFKA_HOME", str(tmp_path / "jars"))
    with pytest.raises(BrokerError, match=r"Maven \('mvn'\) is not on PATH"):
        runtime.ensure_jars()


# -- clients against the session broker -------------------------------------------------

def test_kafka_python_round_trip(kafka_bootstrap: str, topics: Topics) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    sent = [(f"eng-{i % 3}".encode(), f"usage-{i}".encode()) for i in range(10)]
    for key, value in sent:
        producer.send(topics.usage, key=key, value=value)
    producer.flush(timeout=30)
    producer.close()

    group = f"kp-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(topics.usage, bootstrap_servers=kafka_bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    got: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            got += [(r.key, r.value) for r in records]
    consumer.commit()
    committed = sum(consumer.committed(tp) or 0 for tp in consumer.assignment())
    consumer.close()
    assert sorted(got) == sorted(sent)
    assert committed == len(sent)


async def _aiokafka_group_commit(bootstrap: str, topic: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def produce(values: list[bytes]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for v in values:
                await producer.send_and_wait(topic, v, key=v[:5])
        finally:
            await producer.stop()

    async def consume(group: str, n: int, wait_s: float) -> list[bytes]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        got: list[bytes] = []
        try:
            deadline = time.monotonic() + wait_s
            while len(got) < n and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                got += [m.value for msgs in batches.values() for m in msgs]
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    group = f"aio-{uuid.uuid4().hex[:8]}"
    first = [f"grant-{i}".encode() for i in range(8)]
    await produce(first)
    assert sorted(await consume(group, len(first), 30)) == sorted(first)

    # The group resumes from its committed offsets: only the new record comes back.
    await produce([b"grant-late"])
    assert await consume(group, 2, 5) == [b"grant-late"]


def test_aiokafka_consumer_group_commit(kafka_bootstrap: str, topics: Topics) -> None:
    # Faust consumes through aiokafka's classic group protocol; prove this broker serves it.
    asyncio.run(asyncio.wait_for(_aiokafka_group_commit(kafka_bootstrap, topics.grants), 90))


def test_topic_configs(kafka_bootstrap: str, topics: Topics, topic_partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        names = [topics.usage, topics.grants, topics.balances, topics.leaderboards, topics.alerts]
        raw = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names], config_filter="all")
        configs = {name: {k: v["value"] for k, v in entries.items()}
                   for name, entries in raw["topic"].items()}
        for source in (topics.usage, topics.grants):
            assert configs[source]["retention.ms"] == "-1"
            assert configs[source]["cleanup.policy"] == "delete"
        assert configs[topics.balances]["cleanup.policy"] == "compact"
        assert configs[topics.leaderboards]["cleanup.policy"] == "compact"
        assert configs[topics.alerts]["retention.ms"] != "-1"

        partitions = {t["name"]: len(t["partitions"]) for t in admin.describe_topics()}
        assert partitions[topics.usage] == topic_partitions
        assert partitions[topics.balances] == topic_partitions
        assert partitions[topics.leaderboards] == 1
        assert partitions[topics.leaderboard_candidates] == 1
    finally:
        admin.close()
    # Idempotent: a second call creates nothing.
    assert set(ensure_topics(kafka_bootstrap, topics, topic_partitions).values()) == {"exists"}
    with pytest.raises(BrokerError, match="partitions"):
        ensure_topics(kafka_bootstrap, topics, topic_partitions + 1)


def test_topic_partitions_parameter() -> None:
    with pytest.raises(ValueError):
        ensure_topics("127.0.0.1:1", Topics(), 0)
