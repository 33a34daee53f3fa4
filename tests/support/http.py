"""GET a worker's web view as JSON (status, body), also for error statuses."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def http_json(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
