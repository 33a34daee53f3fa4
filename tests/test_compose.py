"""docker-compose.yml, checked statically (no Docker engine here): every
client listener is advertised at an address its clients can reach, and the
host port published for it lands on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml  # a dev dependency (pyproject): a missing one must fail, not skip

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def _pairs(text: str) -> dict[str, str]:
    """"NAME://host:port,..." -> {NAME: "host:port"}."""
    out = {}
    for item in text.split(","):
        name, _, address = item.strip().partition("://")
        if name in out:
            raise AssertionError(f"listener {name} named twice in {text!r}")
        out[name] = address
    return out


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_kafka_has_an_internal_and_a_host_listener(services: dict) -> None:
    env = services["kafka"]["environment"]
    listeners = _pairs(env["KAFKA_LISTENERS"])
    advertised = _pairs(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert advertised == {"PLAINTEXT": "kafka:9092", "EXTERNAL": "localhost:19092"}
    # Each advertised listener is bound on the same port, and the controller is not advertised.
    for name, address in advertised.items():
        assert _port(listeners[name]) == _port(address), name
        assert name in protocols, f"{name} has no security protocol"
    assert set(listeners) == set(advertised) | {env["KAFKA_CONTROLLER_LISTENER_NAMES"]}
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "PLAINTEXT"


def test_host_port_reaches_the_external_listener(services: dict) -> None:
    env = services["kafka"]["environment"]
    external = _pairs(env["KAFKA_ADVERTISED_LISTENERS"])["EXTERNAL"]
    published = {}
    for spec in services["kafka"]["ports"]:
        host, _, container = str(spec).partition(":")
        published[int(host)] = int(container)
    host, port = external.rsplit(":", 1)
    assert host == "localhost"
    # The host connects to the advertised port, which must be published onto
    # the listener bound at that same port inside the container.
    listeners = _pairs(env["KAFKA_LISTENERS"])
    assert published.get(int(port)) == _port(listeners["EXTERNAL"])


def test_worker_uses_the_internal_listener(services: dict) -> None:
    env = services["kafka"]["environment"]
    internal = _pairs(env["KAFKA_ADVERTISED_LISTENERS"])["PLAINTEXT"]
    assert services["worker"]["environment"]["COMPSTREAM_KAFKA_BOOTSTRAP"] == internal


def test_worker_is_restarted_when_it_exits(services: dict) -> None:
    # It exits with code 70 on an agent crash so that it is restarted (runbook).
    assert services["worker"].get("restart") in ("unless-stopped", "always", "on-failure")
