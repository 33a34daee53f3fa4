"""replay.parallel's split: every line read by exactly one worker (events
and bad lines alike), and the automatic job count."""

from __future__ import annotations

import pytest
from test_replay_cli import _mixed_lines, _two_files

from compstream.replay import parallel as replay_parallel
from compstream.replay.file import SourceMap, read_jsonl


@pytest.mark.parametrize("jobs", [2, 3, 5])
def test_each_line_has_exactly_one_worker(tmp_path, jobs):
    paths = list(_two_files(tmp_path, _mixed_lines(tmp_path)))
    paths.append(paths[0])  # the same file twice: lines told apart by file index
    bad_one: list = []
    smap = SourceMap()
    events = list(read_jsonl(paths, bad_one.append, source_map=smap))
    accepted = sorted(
        (smap.locate_file(i)[0], smap.locate_file(i)[2], repr(e)) for i, e in enumerate(events))
    got, bad = [], []
    for me in range(jobs):
        part_map = SourceMap()
        part = list(replay_parallel.read_part(
            paths, me, jobs, lambda i, b: bad.append((i, b)), source_map=part_map))
        for i, e in enumerate(part):
            assert replay_parallel.owner(e.engineer_id, jobs) == me
            index, _, line = part_map.locate_file(i)
            got.append((index, line, repr(e)))
    assert sorted(got) == accepted  # each event once, in its owner
    assert [b for _, b in sorted(bad, key=lambda x: (x[0], x[1].line))] == bad_one
    assert len(bad_one) >= 10


def test_auto_jobs():
    big = replay_parallel.AUTO_MIN_BYTES
    assert replay_parallel.auto_jobs(big - 1, cpus=4) == 1
    assert replay_parallel.auto_jobs(big, cpus=2) == 2
    assert replay_parallel.auto_jobs(big, cpus=64) == replay_parallel.JOBS_MAX
    assert replay_parallel.auto_jobs(big, cpus=1) == 1
