"""The leaderboard documents' fast `dumps` writes exactly json.dumps' bytes
(sorted keys, compact) for every value such documents can hold."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from compstream.worker.leaderboards.partition import dumps

_scalars = st.none() | st.booleans() | st.integers() | st.text() | st.integers(min_value=-(2**70), max_value=2**70)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


def _reference(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@settings(max_examples=500, deadline=None)
@given(_values)
def test_dumps_is_json_dumps_byte_for_byte(obj):
    assert dumps(obj) == _reference(obj)


def test_dumps_of_the_characters_json_escapes():
    for text in ("é", "\x7f", "\x00", "\x1f", '"', "\\", "\u2028", "😀", "plain"):
        doc = {"engineer_id": text, "windows": {text: [1, None, True]}}
        assert dumps(doc) == _reference(doc), repr(text)
