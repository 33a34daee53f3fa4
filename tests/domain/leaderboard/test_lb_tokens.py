"""One definition of the tokens metric (domain/tokens.py): cache tokens counted once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from lb_support import at, run_two_stage, usage

from compstream.domain.leaderboard import LeaderboardConfig, Metric, Scope
from compstream.domain.leaderboard.totals import Totals, metric_value
from compstream.domain.leaderboard.window_totals import PartitionWindow
from compstream.domain.tokens import TOKENS_SQL, tokens


def test_cache_tokens_inside_input_are_counted_once():
    # OpenAI-style row: 1,000 input of which 600 cache reads and 100 cache writes, 50 output.
    u = usage("a", at(0), inp=1_000, out=50, cache_read=600, cache_write=100)
    merge = run_two_stage([u], LeaderboardConfig(k=5, min_team_size=1), 1)
    (entry,) = merge.boards("all").board(Scope.ENGINEER, Metric.TOKENS).entries
    assert entry.value == 1_050  # not 1_750 (cache added again), not 350 (cache left out)
    assert entry.totals.cache_tokens == 700  # reported as the part of input it is


def test_sql_definition_names_the_same_fields():
    assert TOKENS_SQL.replace(" ", "") == "input_tokens+output_tokens"


@given(st.lists(st.tuples(st.integers(1, 10**9), st.integers(0, 10**9), st.integers(0, 10**6), st.integers(0, 10**6)),
                min_size=1, max_size=20))
def test_every_path_of_the_ranking_value_agrees_with_the_definition(rows):
    pw = PartitionWindow("all")
    total = Totals()
    for inp, out, cr, cw in rows:
        t = Totals(inp + cr + cw, out, cr, cw, 0, 0, 1)  # cache inside input, as ingest builds it
        pw.add("a", "", t)
        total = total + t
    want = tokens(total.input_tokens, total.output_tokens)
    assert total.tokens == total.value(Metric.TOKENS) == metric_value(Metric.TOKENS)(total) == want
    _, (entry,) = pw.top_engineers(1, ())
    assert entry.totals.tokens == want
    assert pw._values["a"][0] == want  # the inlined hot-path cache
