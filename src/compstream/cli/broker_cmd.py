"""`compstream broker ...`: run the local single-node Kafka broker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from compstream.broker import runtime
from compstream.broker.jars import KAFKA_VERSION, BrokerError
from compstream.config import Settings

console = Console()
err_console = Console(stderr=True)

broker_app = typer.Typer(help="Run the local Apache Kafka broker (single-node KRaft).",
                         no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", help="Broker data dir.", show_default="$COMPSTREAM_DATA_DIR/kafka")]


def _default_port() -> int:
    # Keep `broker start` and every client agreeing on one address: the port
    # comes from COMPSTREAM_KAFKA_BOOTSTRAP when that names this machine.
    host, _, port = Settings.from_env().kafka_bootstrap.split(",")[0].rpartition(":")
    if host in ("localhost", "127.0.0.1", "") and port.isdigit():
        return int(port)
    return runtime.DEFAULT_PORT


def _fail(exc: BrokerError) -> None:
    first, *rest = str(exc).splitlines() or ["broker error"]
    err_console.print(f"[bold red]error:[/] {first}", highlight=False, soft_wrap=True)
    if rest:
        err_console.print("\n".join(rest), style="dim", highlight=False, markup=False)
    raise typer.Exit(1)


@broker_app.command()
def start(
    data_dir: DataDir = None,
    port: Annotated[int | None, typer.Option(
        help="PLAINTEXT port on 127.0.0.1.", show_default="from COMPSTREAM_KAFKA_BOOTSTRAP, else 19092")] = None,
    controller_port: Annotated[int | None, typer.Option(help="KRaft controller port.", show_default="port+1")] = None,
    partitions: Annotated[int | None, typer.Option(
        help="num.partitions for auto-created topics.", show_default="$COMPSTREAM_SOURCE_PARTITIONS")] = None,
    version: Annotated[str, typer.Option(help="Kafka version (Maven Central).")] = KAFKA_VERSION,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 90.0,
) -> None:
    """Download the jars if needed, start the broker detached, wait until it is ready."""
    try:
        with console.status(f"starting Kafka {version} ..."):
            info = runtime.start(data_dir, port=port or _default_port(),
                                 controller_port=controller_port,
                                 partitions=partitions or Settings.from_env().source_partitions,
                                 version=version, timeout_s=timeout)
    except BrokerError as exc:
        _fail(exc)
    verb = "already running" if info.already_running else f"ready in {info.startup_s:.1f}s"
    console.print(f"[green]Kafka {info.version}[/] {verb} at [bold]{info.bootstrap}[/] "
                  f"(pid {info.pid}, data {info.data_dir}, log {info.log_path})", highlight=False)


@broker_app.command()
def stop(
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait after SIGTERM before SIGKILL.")] = 30.0,
) -> None:
    """Stop the broker cleanly (SIGTERM, then SIGKILL after --timeout)."""
    try:
        stopped = runtime.stop(data_dir, timeout_s=timeout)
    except BrokerError as exc:
        _fail(exc)
    console.print("[green]broker stopped[/]" if stopped else "broker is not running; nothing to stop")


@broker_app.command()
def status(data_dir: DataDir = None) -> None:
    """Show whether the broker runs and answers. Exit code 0 = ready, 3 = not running."""
    st = runtime.status(data_dir)
    if not st.running:
        console.print(f"broker is [yellow]not running[/] (data {st.data_dir})", highlight=False)
        raise typer.Exit(3)
    health = "[green]ready[/]" if st.ready else "[red]not answering[/]"
    console.print(f"Kafka {st.version} {health} at [bold]{st.bootstrap}[/] (pid {st.pid}, "
                  f"log {st.log_path})", highlight=False)
    if not st.ready:
        raise typer.Exit(1)


@broker_app.command()
def topics(
    bootstrap: Annotated[str | None, typer.Option(
        help="Kafka bootstrap.", show_default="$COMPSTREAM_KAFKA_BOOTSTRAP")] = None,
    partitions: Annotated[int | None, typer.Option(
        help="Partitions of the keyed topics.", show_default="$COMPSTREAM_SOURCE_PARTITIONS")] = None,
) -> None:
    """Create the project topics if missing (idempotent)."""
    from compstream.broker.topics import ensure_topics  # kafka-python import only when used

    settings = Settings.from_env()
    try:
        result = ensure_topics(bootstrap or settings.kafka_bootstrap, settings.topics,
                               partitions or settings.source_partitions)
    except (BrokerError, ValueError) as exc:
        _fail(BrokerError(str(exc)))
    for name, what in result.items():
        style = "green" if what == "created" else "dim"
        console.print(f"[{style}]{what:>7}[/] {name}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(broker_app, name="broker")
