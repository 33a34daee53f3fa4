"""orjson where its bytes are the json module's, for documents of str keys
and str / int / bool / None values (no floats: they print differently).

orjson leaves non-ASCII and DEL as they are and escapes control characters,
quotes and backslashes with a backslash; json (ensure_ascii) escapes all of
those, so any of them in orjson's output means the two may differ. Ints
beyond 64 bits and non-str keys make orjson raise (JSONEncodeError is a
TypeError)."""

from __future__ import annotations

from typing import Any

import orjson


def orjson_if_same(obj: Any, option: int) -> bytes | None:
    """orjson.dumps(obj, option=option), or None where json's text may differ."""
    try:
        data = orjson.dumps(obj, option=option)
    except TypeError:
        return None
    if data.isascii() and b"\\" not in data and b"\x7f" not in data:
        return data
    return None
