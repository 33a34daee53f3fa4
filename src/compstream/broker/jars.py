"""Fetch the Kafka broker's jars from Maven Central, once, into a local cache.

The project runs a real Apache Kafka broker from plain Maven artifacts, so the
only prerequisites are Java 17+ and Maven; tools/kafka/pom.xml lists what the
broker needs at runtime and Maven resolves the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

# 4.1.1: the newest 4.1 patch release; aiokafka's classic consumer-group
# protocol (what Faust uses) is verified against it in test_broker_lifecycle.
KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"

MARKER = ".complete"
MAVEN_TIMEOUT_S = 20 * 60  # a cold ~/.m2 downloads ~40 MB of jars
_POM = Path(__file__).resolve().parents[3] / "tools" / "kafka" / "pom.xml"


class BrokerError(RuntimeError):
    """An expected failure of the local broker tooling; str() is for humans."""


def kafka_home(version: str = KAFKA_VERSION) -> Path:
    """Where the jars of `version` live: $COMPSTREAM_KAFKA_HOME or the user cache."""
    override = os.environ.get("COMPSTREAM_KAFKA_HOME")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "compstream" / f"kafka-{version}"


def _main_jar(version: str) -> str:
    return f"kafka_{SCALA_VERSION}-{version}.jar"


def jars_complete(libs: Path, version: str = KAFKA_VERSION) -> bool:
    """True when a previous copy finished: marker matches and every jar is still there."""
    marker = libs / MARKER
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if record.get("version") != version:
        return False
    jars = record.get("jars") or []
    return _main_jar(version) in jars and all((libs / name).is_file() for name in jars)


def ensure_jars(version: str = KAFKA_VERSION, home: Path | None = None) -> Path:
    """Return the libs dir holding the broker's classpath, running Maven only if needed."""
    home = home or kafka_home(version)
    libs = home / "libs"
    if jars_complete(libs, version):
        return libs

    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven ('mvn') is not on PATH; it is needed once to download the Kafka "
            f"{version} jars into {libs}. Install Maven 3.8+ or set COMPSTREAM_KAFKA_HOME "
            "to a directory whose libs/ already holds them."
        )
    if not _POM.is_file():
        raise BrokerError(f"cannot find {_POM}; run from a compstream source checkout")

    # Copy into a scratch dir and swap it in, so an interrupted download never
    # leaves a half-filled libs/ that looks usable.
    home.mkdir(parents=True, exist_ok=True)
    staging = home / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(_POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        f"-Dkafka.version={version}",
    ]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"Maven did not finish within {MAVEN_TIMEOUT_S}s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise BrokerError(f"Maven failed to fetch Kafka {version} (exit {proc.returncode}):\n{tail}")

    jars = sorted(p.name for p in staging.glob("*.jar"))
    if _main_jar(version) not in jars:
        raise BrokerError(f"Maven finished but {_main_jar(version)} is missing from {staging}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (libs / MARKER).write_text(json.dumps({
        "version": version,
        "jars": jars,
        "seconds": round(time.monotonic() - started, 1),
    }, indent=1))
    return libs
