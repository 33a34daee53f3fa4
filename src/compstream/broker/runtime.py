"""Start, stop and inspect a real single-node Kafka 4.x broker (KRaft, combined
broker+controller) running from Maven Central jars in a local data dir.

Layout of a data dir:
  server.properties, log4j2.properties  written on every start
  broker.json                           ports/version/cluster id of the last start
  broker.pid                            pid of the running JVM (own process group)
  broker.log                            the JVM's stdout+stderr (log4j console)
  logs/                                 Kafka's log.dirs (KRaft metadata + topics)
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from compstream.broker.jars import KAFKA_VERSION, BrokerError, ensure_jars
from compstream.broker.storage import LOG4J, format_storage, new_cluster_id, read_cluster_id, server_properties
from compstream.config import Settings
from compstream.processes import pid_alive, pid_cmdline

__all__ = [
    "BrokerError", "BrokerInfo", "BrokerStatus", "DEFAULT_PORT",
    "default_data_dir", "ensure_jars", "start", "status", "stop",
]

DEFAULT_PORT = 19092
_log = logging.getLogger(__name__)
# Popen handles of brokers started by this process: keeps them from being
# garbage-collected (ResourceWarning) and lets us reap them (no zombies).
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class BrokerInfo:
    bootstrap: str
    pid: int
    port: int
    controller_port: int
    version: str
    data_dir: Path
    log_path: Path
    startup_s: float
    already_running: bool = False


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    ready: bool
    pid: int | None
    bootstrap: str | None
    version: str | None
    data_dir: Path
    log_path: Path


def default_data_dir() -> Path:
    return Settings.from_env().data_dir / "kafka"


def _paths(data_dir: Path) -> dict[str, Path]:
    return {
        "props": data_dir / "server.properties",
        "log4j": data_dir / "log4j2.properties",
        "state": data_dir / "broker.json",
        "pid": data_dir / "broker.pid",
        "log": data_dir / "broker.log",
        "logs": data_dir / "logs",
    }


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no broker log)"


# -- process bookkeeping ---------------------------------------------------------

def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    return pid_alive(pid)


def _is_our_broker(pid: int, props: Path) -> bool:
    """Guard against pid reuse: the pid must be a kafka.Kafka JVM on *this* config."""
    if not _alive(pid):
        return False
    if pid in _CHILDREN:  # started by this very process: no doubt about identity
        return True
    cmdline = pid_cmdline(pid)
    if cmdline is None:
        return True  # no /proc (macOS): trust the pid file
    if cmdline == [b""]:
        return True  # briefly empty around exec (seen under gVisor): trust the pid file
    return b"kafka.Kafka" in cmdline and str(props).encode() in cmdline


def _running_pid(data_dir: Path) -> int | None:
    p = _paths(data_dir)
    try:
        pid = int(p["pid"].read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_our_broker(pid, p["props"]) else None


def _read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Java binds with SO_REUSEADDR too, so TIME_WAIT leftovers of a previous
        # broker must not count as "taken"; a live listener still does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Java is not on PATH; the Kafka 4.x broker needs Java 17 or newer.")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"cannot run '{java} -version': {exc}") from exc
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if m:
        major = int(m.group(2)) if m.group(1) == "1" else int(m.group(1))
        if major < 17:
            raise BrokerError(f"{java} is Java {major}; Kafka 4.x needs Java 17 or newer.")
    return java


# -- readiness ---------------------------------------------------------------------

def _probe(bootstrap: str, timeout_s: float) -> dict | None:
    """One real metadata round trip; returns describe_cluster() or None."""
    host, _, port = bootstrap.rpartition(":")
    try:  # cheap pre-check so kafka-python doesn't log connection-refused noise
        socket.create_connection((host, int(port)), timeout=min(timeout_s, 2.0)).close()
    except OSError:
        return None
    from kafka.admin import KafkaAdminClient

    ms = max(int(timeout_s * 1000), 500)
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compstream-probe",
                                 bootstrap_timeout_ms=ms, request_timeout_ms=ms)
    except Exception:  # any failure here just means "not ready yet"
        return None
    try:
        cluster = admin.describe_cluster()
    except Exception:
        return None
    finally:
        admin.close()
    return cluster if cluster.get("brokers") else None


# -- public API --------------------------------------------------------------------

def start(
    data_dir: Path | None = None,
    port: int = DEFAULT_PORT,
    controller_port: int | None = None,
    partitions: int = 4,
    version: str = KAFKA_VERSION,
    timeout_s: float = 90.0,
    heap: str = "512m",
) -> BrokerInfo:
    """Start the broker detached and wait until it answers a metadata request.

    Idempotent: if this data dir's broker already runs, its info is returned.
    """
    data_dir = Path(data_dir or default_data_dir()).resolve()
    controller_port = controller_port or port + 1
    p = _paths(data_dir)
    t0 = time.monotonic()

    if controller_port == port:
        raise BrokerError(f"the broker and controller ports must differ (both {port})")

    pid = _running_pid(data_dir)
    if pid is not None:
        state = _read_state(p["state"])
        if state.get("port") != port:
            raise BrokerError(f"the broker in {data_dir} already runs on port "
                              f"{state.get('port', '?')}, not {port}; stop it first")
        return BrokerInfo(f"127.0.0.1:{port}", pid, port, state.get("controller_port", 0),
                          state.get("version", "?"), data_dir, p["log"], 0.0, already_running=True)

    java = _java()
    for what, n in (("broker", port), ("controller", controller_port)):
        if not _port_free(n):
            raise BrokerError(f"{what} port {n} on 127.0.0.1 is already in use; "
                              "choose another with --port or stop whatever listens there")
    libs = ensure_jars(version)

    data_dir.mkdir(parents=True, exist_ok=True)
    p["props"].write_text(server_properties(p["logs"], port, controller_port, partitions))
    p["log4j"].write_text(LOG4J)
    cluster_id = read_cluster_id(p["logs"])
    if cluster_id is None:  # format once; a formatted dir keeps its topics across restarts
        cluster_id = new_cluster_id()
        format_storage(java, libs, p, cluster_id)
    p["state"].write_text(json.dumps({"port": port, "controller_port": controller_port,
                                      "version": version, "cluster_id": cluster_id}, indent=1))

    if p["log"].exists():
        p["log"].replace(p["log"].with_suffix(".log.1"))
    cmd = [java, f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
           f"-Dlog4j2.configurationFile={p['log4j']}", "-cp", f"{libs}/*",
           "kafka.Kafka", str(p["props"])]
    with open(p["log"], "wb") as log:
        # Own session/process group: the broker outlives the CLI and stop() can
        # signal the whole group.
        proc = subprocess.Popen(cmd, cwd=data_dir, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    p["pid"].write_text(f"{proc.pid}\n")

    bootstrap = f"127.0.0.1:{port}"
    deadline = t0 + timeout_s
    while True:
        if proc.poll() is not None:
            p["pid"].unlink(missing_ok=True)
            raise BrokerError(f"the Kafka broker exited with code {proc.returncode} during "
                              f"startup; last lines of {p['log']}:\n{_log_tail(p['log'])}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stop(data_dir, timeout_s=15)
            raise BrokerError(f"the Kafka broker did not become ready within {timeout_s:.0f}s "
                              f"(stopped it); last lines of {p['log']}:\n{_log_tail(p['log'])}")
        cluster = _probe(bootstrap, min(remaining, 5.0))
        if cluster is not None:
            if cluster.get("cluster_id") not in (None, cluster_id):
                stop(data_dir, timeout_s=15)
                raise BrokerError(f"{bootstrap} answered with cluster id {cluster['cluster_id']}, "
                                  f"expected {cluster_id}: another broker holds the port")
            break
        time.sleep(0.25)
    return BrokerInfo(bootstrap, proc.pid, port, controller_port, version, data_dir, p["log"],
                      round(time.monotonic() - t0, 2))


def stop(data_dir: Path | None = None, timeout_s: float = 30.0) -> bool:
    """SIGTERM the broker (clean shutdown), SIGKILL after timeout_s.

    Returns False when nothing was running (a no-op, not an error).
    """
    data_dir = Path(data_dir or default_data_dir()).resolve()
    p = _paths(data_dir)
    pid = _running_pid(data_dir)
    if pid is None:
        p["pid"].unlink(missing_ok=True)  # stale pid file from a crash/reboot
        return False

    def signal_group(sig: int) -> None:
        try:
            os.killpg(pid, sig)  # pgid == pid thanks to start_new_session
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, sig)

    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        signal_group(sig)
        deadline = time.monotonic() + wait_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _alive(pid):
            break
        _log.warning("broker pid %s ignored %s for %.0fs", pid, sig.name, wait_s)
    else:
        raise BrokerError(f"broker pid {pid} survived SIGKILL; check it by hand")
    _CHILDREN.pop(pid, None)
    p["pid"].unlink(missing_ok=True)
    return True


def status(data_dir: Path | None = None, probe_timeout_s: float = 5.0) -> BrokerStatus:
    data_dir = Path(data_dir or default_data_dir()).resolve()
    p = _paths(data_dir)
    pid = _running_pid(data_dir)
    state = _read_state(p["state"])
    bootstrap = f"127.0.0.1:{state['port']}" if "port" in state else None
    ready = bool(pid and bootstrap and _probe(bootstrap, probe_timeout_s) is not None)
    return BrokerStatus(running=pid is not None, ready=ready, pid=pid, bootstrap=bootstrap,
                        version=state.get("version"), data_dir=data_dir, log_path=p["log"])
