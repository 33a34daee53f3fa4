"""Builders and a brute-force reference model for the leaderboard tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

from compstream.domain.events import LeaderboardPrivacy, TeamAssigned, Usage
from compstream.domain.leaderboard import (
    LeaderboardConfig,
    MergeState,
    Metric,
    PartitionState,
    Scope,
    window_for,
    window_from_key,
)
from compstream.domain.leaderboard.messages import CandidateMessage

UTC = timezone.utc
T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
_ids = itertools.count()


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    """Offset from T0 (day 0 = Mon 2026-11-02)."""
    return T0 + timedelta(days=day, hours=hour, minutes=minute)


def usage(engineer: str, when: datetime, inp: int = 10, out: int = 0, cost: int | None = 0,
          cache_read: int = 0, cache_write: int = 0) -> Usage:
    return Usage(
        event_id=f"u{next(_ids)}", engineer_id=engineer, provider="p", model="m",
        occurred_at=when, input_tokens=inp, output_tokens=out,
        cache_read_tokens=cache_read, cache_write_tokens=cache_write, cost_nanos=cost,
    )


def assign(engineer: str, team: str, when: datetime, event_id: str | None = None) -> TeamAssigned:
    return TeamAssigned(event_id or f"t{next(_ids)}", engineer, team, when)


def privacy(engineer: str, opted_out: bool, when: datetime, event_id: str | None = None) -> LeaderboardPrivacy:
    return LeaderboardPrivacy(event_id or f"p{next(_ids)}", engineer, opted_out, when)


def partition_of(engineer: str, partitions: int) -> int:
    # Deterministic stand-in for Kafka's key hashing.
    return sum(engineer.encode()) % partitions


def run_two_stage(events, config: LeaderboardConfig, partitions: int, watermark=None) -> MergeState:
    """Route events by engineer, run every partition, ship messages to a merge."""
    states = [PartitionState(p, config) for p in range(partitions)]
    for ev in events:
        st = states[partition_of(ev.engineer_id, partitions)]
        if isinstance(ev, Usage):
            st.apply_usage(ev)
        else:
            st.apply_hr(ev)
    merge = MergeState(config)
    for st in states:
        for msg in st.drain():
            merge.apply(msg)
    if watermark is not None:
        for st in states:
            for msg in st.advance_watermark(watermark):
                merge.apply_message(msg)
    return merge


def collect_messages(states) -> list[CandidateMessage]:
    return [m for st in states for m in st.drain()]


# -- brute-force reference ----------------------------------------------------

def _team_at(hr, engineer, ts):
    changes = sorted(
        (e.effective_at, e.event_id, e.team_id)
        for e in hr if isinstance(e, TeamAssigned) and e.engineer_id == engineer and e.effective_at <= ts
    )
    return changes[-1][2] if changes else None


def _opted_out_at(hr, engineer, ts):
    changes = sorted(
        (e.effective_at, e.event_id, e.opted_out)
        for e in hr if isinstance(e, LeaderboardPrivacy) and e.engineer_id == engineer and e.effective_at <= ts
    )
    return changes[-1][2] if changes else False


def _hidden(hr, engineer, window):
    mine = [e for e in hr if isinstance(e, LeaderboardPrivacy) and e.engineer_id == engineer]
    if window.start is None:
        return any(e.opted_out for e in mine)
    if _opted_out_at(hr, engineer, window.start):
        return True
    return any(e.opted_out and window.start < e.effective_at < window.end for e in mine)


def direct_board(usages, hr, window_key, scope: Scope, metric: Metric, k: int, min_team_size: int = 5):
    """[(id, value)] computed straight from all events, no stages."""
    window = window_from_key(window_key)
    sums: dict[str, list[int]] = {}
    members: dict[str, set] = {}
    for u in usages:
        if window_for(window.kind, u.occurred_at).key != window_key:
            continue
        value = u.input_tokens + u.output_tokens if metric is Metric.TOKENS else (u.cost_nanos or 0)
        if scope is Scope.ENGINEER:
            sums.setdefault(u.engineer_id, [0])[0] += value
        else:
            team = _team_at(hr, u.engineer_id, u.occurred_at)
            if team is None:
                continue
            sums.setdefault(team, [0])[0] += value
            if u.input_tokens or u.output_tokens or u.cache_read_tokens or u.cache_write_tokens or u.cost_nanos:
                members.setdefault(team, set()).add(u.engineer_id)
    rows = [(i, v[0]) for i, v in sums.items() if v[0] > 0]
    if scope is Scope.ENGINEER:
        rows = [(i, v) for i, v in rows if not _hidden(hr, i, window)]
    else:
        rows = [(i, v) for i, v in rows if len(members.get(i, ())) >= min_team_size]
    rows.sort(key=lambda r: (-r[1], r[0]))
    return rows[:k]


def board_rows(merge: MergeState, window_key, scope, metric):
    return [(e.id, e.value) for e in merge.boards(window_key).board(scope, metric).entries]
