"""`compstream worker` and `compstream demo`."""

from __future__ import annotations

import typer

from compstream.config import Settings


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        loglevel: str = typer.Option("WARNING", help="Faust/compstream log level."),
    ) -> None:
        """Run the stream worker (balances, alerts, history) until stopped."""
        from compstream.worker.run import run_worker

        run_worker(Settings.from_env(), loglevel=loglevel.upper())

    @app.command()
    def sink(
        loglevel: str = typer.Option("INFO", help="Log level."),
        group: str = typer.Option("", help="Consumer group of this loader (default: <worker id>-history-sink)."),
    ) -> None:
        """Load the history topic (transactional engine) into the history store, exactly once, until stopped."""
        from compstream.worker.sink_main import run_sink

        run_sink(Settings.from_env(), group or None, loglevel.upper())

    @app.command()
    def demo(
        fresh: bool = typer.Option(True, help="Wipe the demo data dir first."),
        events_file: str = typer.Option("", help="Canonical JSONL to feed (default: bundled sample)."),
    ) -> None:
        """Start broker + worker on embedded defaults, feed sample events, print balances and history counts, stop."""
        from compstream.demo import run_demo

        raise typer.Exit(run_demo(Settings.from_env(), fresh=fresh, events_file=events_file or None))
