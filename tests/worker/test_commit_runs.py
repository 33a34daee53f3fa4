"""faust_compat.runs_with_repeats: the run finder Faust's commit uses once
keep_commits_moving() is installed (a repeated acked offset stays in its run)."""

from __future__ import annotations

from faust.utils.functional import consecutive_numbers
from hypothesis import given
from hypothesis import strategies as st

from compstream.worker.engines.faust.compat import keep_commits_moving, runs_with_repeats


def test_a_repeat_stays_in_its_run():
    assert list(runs_with_repeats([4, 5, 5, 6, 9, 9, 10])) == [[4, 5, 5, 6], [9, 9, 10]]
    assert list(runs_with_repeats([])) == []
    # Faust's own finder splits at every repeat: the commit moved one offset at a time.
    assert next(consecutive_numbers([4, 5, 5, 6, 9])) == [4, 5]


@given(st.lists(st.integers(0, 60)))
def test_same_as_faust_without_repeats_and_every_number_once_in_order(numbers):
    numbers.sort()
    runs = list(runs_with_repeats(numbers))
    assert [n for run in runs for n in run] == numbers
    for a, b in zip(runs, runs[1:], strict=False):
        assert b[0] > a[-1] + 1
    for run in runs:
        assert all(y - x in (0, 1) for x, y in zip(run, run[1:], strict=False))
    distinct = sorted(set(numbers))
    assert list(runs_with_repeats(distinct)) == list(consecutive_numbers(distinct))


def test_installed_where_faust_commits():
    import faust.transport.consumer as consumer_module

    keep_commits_moving()
    assert consumer_module.consecutive_numbers is runs_with_repeats
