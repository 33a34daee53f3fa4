"""The web views every engine serves, on a thread of their own:

    GET /balances/{engineer}             the committed book as of its partition's stream time
    GET /leaderboards/{window}/{dimension}
    GET /metrics                         Prometheus text

A balance is read from the engine's current LedgerCore's committed view
(core/committed.py): as of the last checkpoint the engine made durable,
never the step in flight, so it is never ahead of the balance topic.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import unquote

from compstream.config import Settings
from compstream.worker.balance_view import balance_body
from compstream.worker.core.checkpoint import LedgerCore
from compstream.worker.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from compstream.worker.metrics import WorkerMetrics

# (window, dimension, the engine's current core) -> (HTTP status, JSON body)
BoardView = Callable[[str, str, LedgerCore], tuple[int, dict[str, Any]]]

def serve(settings: Settings, core_of: Callable[[], LedgerCore], metrics: WorkerMetrics) -> ThreadingHTTPServer:
    """Start the web views on a daemon thread; `core_of()` is the engine's current core."""
    from compstream.domain.book import EngineerBook

    boards = _board_view(settings) if settings.leaderboards_enabled else None

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep request lines out of the worker log
            pass

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = [unquote(x) for x in self.path.split("?")[0].strip("/").split("/")]
            if parts == ["metrics"]:
                text = metrics.render()
                self.send_response(200)
                self.send_header("Content-Type", METRICS_CONTENT_TYPE)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)
                return None
            if len(parts) == 3 and parts[0] == "leaderboards" and boards is not None:
                status, body = boards(parts[1], parts[2], core_of())
                return self._json(status, body)
            if len(parts) != 2 or parts[0] != "balances":
                return self._json(404, {"error": "not found"})
            engineer = unquote(parts[1])
            data, times = core_of().view.read(engineer)
            if data is None:
                return self._json(404, {"error": f"no balance for {engineer!r}"})
            book = EngineerBook.from_bytes(data)
            until, final = times if times is not None else (None, book.watermark)
            self._json(200, balance_body(book, until, final))

    server = ThreadingHTTPServer((settings.web_bind, settings.web_port), Handler)
    threading.Thread(target=server.serve_forever, name="web", daemon=True).start()
    return server


def _board_view(settings: Settings) -> BoardView:
    """GET /leaderboards/{window}/{dimension}: from the boards the merge
    published in its last committed checkpoint where this worker owns it,
    else from the leaderboards topic (as the Faust engine)."""
    from compstream.worker.leaderboards.merge import DIMENSIONS
    from compstream.worker.leaderboards.view import BadRequest, Boards, TopicBoards, resolve_window

    reader = TopicBoards(settings.kafka_bootstrap, settings.topics.leaderboards)
    lock = threading.Lock()

    def view(window: str, dimension: str, core: LedgerCore) -> tuple[int, dict[str, Any]]:
        if dimension not in DIMENSIONS:
            return 400, {"error": f"unknown dimension {dimension!r}", "dimensions": sorted(DIMENSIONS)}
        scope, metric = DIMENSIONS[dimension]

        def answer(source: Boards) -> dict[str, Any] | None:
            key = resolve_window(window, source.known_windows())
            return None if key is None else source.lookup(key, scope, metric)

        try:
            if core.leaderboards is not None and core.leaderboards.merge.loaded():
                served_by = "merge-state"
                board = core.view.read_boards(answer)
            else:
                served_by = "leaderboards-topic"
                with lock:
                    reader.refresh()
                    board = answer(reader)
        except BadRequest as exc:
            return 400, {"error": str(exc)}
        if board is None:
            return 404, {"error": f"no {dimension} board for {window!r}", "served_by": served_by}
        return 200, {**board, "served_by": served_by}

    return view
