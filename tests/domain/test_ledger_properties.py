"""Hypothesis properties: conservation, order and duplicate independence,
streaming == replay, and a stateful differential test against a tiny model."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from ledger_support import PROPS, STATEFUL, US, at, event_lists, event_time

from compstream.domain.book import EngineerBook
from compstream.domain.chain import verify_chain
from compstream.domain.replay import replay, replay_detailed


def _summary(r):
    return (r.balances,
            {k: [(p.kind, p.grant_id, p.amount_nanos, p.cause_event_id, p.hash) for p in v]
             for k, v in r.postings.items()},
            r.alerts, sorted((x.engineer_id, x.event_id, x.code) for x in r.reports))


@PROPS
@given(event_lists(), st.one_of(st.none(), st.integers(0, 15)))
def test_conservation_and_identities(events, as_of_h):
    r = replay_detailed(events, None if as_of_h is None else at(as_of_h))
    for eng, b in r.balances.items():
        assert b.conserved()
        assert b.available_nanos == b.remaining_nanos - b.overdraft_nanos
        assert b.usage_cost_nanos == b.consumed_nanos + b.overdraft_nanos
        assert min(b.remaining_nanos, b.overdraft_nanos, b.expired_nanos, b.revoked_nanos,
                   b.forfeited_nanos, b.consumed_nanos) >= 0
        verify_chain(r.postings[eng])
        if r.postings[eng]:
            assert r.postings[eng][-1].available_after_nanos == b.available_nanos
    assert replay(events, None if as_of_h is None else at(as_of_h)) == r.balances


@PROPS
@given(event_lists(), st.randoms(use_true_random=False))
def test_shuffling_never_changes_the_result(events, rnd):
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert _summary(replay_detailed(shuffled)) == _summary(replay_detailed(events))


@PROPS
@given(event_lists(), st.data())
def test_duplicating_events_never_changes_the_result(events, data):
    extra = data.draw(st.lists(st.sampled_from(events), max_size=10)) if events else []
    pos = data.draw(st.integers(0, len(events)))
    noisy = events[:pos] + extra + events[pos:] + extra
    a, b = replay_detailed(events), replay_detailed(noisy)
    assert _summary(a) == _summary(b)
    assert b.duplicates == 2 * len(extra) and b.conflicts == 0


def _stream(events, delays, lateness, check_provisional=True):
    """Feed events to per-engineer books in arrival order (time + delay, delay
    <= lateness); watermark = max event time seen - lateness."""
    order = sorted(range(len(events)),
                   key=lambda i: (event_time(events[i]) + delays[i], i))
    books: dict[str, EngineerBook] = {}
    out: dict[str, list] = {}
    max_seen = None
    seen_so_far = []
    for i in order:
        e = events[i]
        t = event_time(e)
        max_seen = t if max_seen is None else max(max_seen, t)
        book = books.get(e.engineer_id) or EngineerBook.empty(e.engineer_id)
        # round trip through bytes like the Faust table does
        book = EngineerBook.from_bytes(book.to_bytes())
        books[e.engineer_id] = book
        res = book.ingest(e, max_seen - lateness)
        assert not res.late
        out.setdefault(e.engineer_id, []).extend(res.postings)
        seen_so_far.append(e)
        if check_provisional:
            mine = [x for x in seen_so_far if x.engineer_id == e.engineer_id]
            assert res.balance == replay(mine, book.as_of()).get(e.engineer_id, res.balance)
    return books, out


@PROPS
@given(event_lists(), st.data(), st.integers(0, 5))
def test_streaming_within_lateness_equals_replay(events, data, lateness_h):
    lateness = timedelta(hours=lateness_h)
    delays = [timedelta(minutes=data.draw(st.integers(0, 60 * lateness_h))) for _ in events]
    books, out = _stream(events, delays, lateness)
    # advance to an intermediate watermark: finalized part == replay as of W - 1us
    w = at(data.draw(st.integers(0, 15)))
    expected_mid = replay(events, w - US)
    for eng, book in books.items():
        fin = book.advance(w)
        out[eng].extend(fin.postings)
        if book.watermark == w:
            assert book.final_balance() == expected_mid[eng]
    ref = replay_detailed(events)
    for eng, book in books.items():
        out[eng].extend(book.finalize_all().postings)
        assert book.final_balance() == ref.balances[eng]
        assert out[eng] == ref.postings[eng]


def test_event_exactly_lateness_behind_is_on_time():
    from ledger_support import grant, usage
    book = EngineerBook.empty("e1")
    book.ingest(usage("u2", 5, 1), at(5) - timedelta(hours=2))
    res = book.ingest(grant("g", "A", 10, 3), at(5) - timedelta(hours=2))
    assert not res.late


# ------------------------------------------------------------- stateful
class LedgerMachine(RuleBasedStateMachine):
    """Events in strictly increasing time go to a book (with bytes round trips
    and watermarks) and to a ten-line dict model; balances must agree."""

    def __init__(self):
        super().__init__()
        from ledger_support import grant, offboard, revoke, usage
        self.mk = dict(grant=grant, usage=usage, revoke=revoke, offboard=offboard)
        self.book = EngineerBook.empty("e1")
        self.h = 0.0
        self.n = 0
        self.grants: dict[str, dict] = {}  # gid -> {left, exp, eff}
        self.m = dict(issued=0, consumed=0, overdraft=0, expired=0, revoked=0, forfeited=0)

    def _tick(self, dt):
        self.h += dt
        self.n += 1
        for gid, g in sorted(self.grants.items()):
            if g["exp"] is not None and g["exp"] <= self.h:
                self.m["expired"] += g["left"]
                del self.grants[gid]

    def _feed(self, e):
        self.book.ingest(e, at(self.h) - timedelta(hours=1))

    @rule(amount=st.integers(1, 100), life=st.one_of(st.none(), st.integers(1, 5)))
    def issue(self, amount, life):
        self._tick(0.5)
        gid = f"G{self.n}"
        exp = None if life is None else self.h + life
        self._feed(self.mk["grant"](f"e{self.n}", gid, amount, self.h, exp))
        self.grants[gid] = dict(left=amount, exp=exp, eff=self.h)
        self.m["issued"] += amount

    @rule(cost=st.integers(0, 120))
    def use(self, cost):
        self._tick(0.5)
        self._feed(self.mk["usage"](f"e{self.n}", self.h, cost))
        order = sorted(self.grants.items(), key=lambda kv: (
            kv[1]["exp"] is None, kv[1]["exp"] or 0, kv[1]["eff"], kv[0]))
        for _, g in order:
            take = min(cost, g["left"])
            g["left"] -= take
            self.m["consumed"] += take
            cost -= take
        self.m["overdraft"] += cost

    @rule(pick=st.integers(0, 10))
    def revoke(self, pick):
        self._tick(0.5)
        gids = sorted(self.grants)
        gid = gids[pick % len(gids)] if gids else "unknown"
        self._feed(self.mk["revoke"](f"e{self.n}", gid, self.h))
        if gid in self.grants:
            self.m["revoked"] += self.grants.pop(gid)["left"]

    @rule()
    def offboard(self):
        self._tick(0.5)
        self._feed(self.mk["offboard"](f"e{self.n}", self.h))
        self.m["forfeited"] += sum(g["left"] for g in self.grants.values())
        self.grants.clear()

    @rule()
    def restart(self):
        self.book = EngineerBook.from_bytes(self.book.to_bytes())

    @invariant()
    def agrees_with_model(self):
        b = self.book.balance()
        remaining = sum(g["left"] for g in self.grants.values())
        assert (b.issued_nanos, b.consumed_nanos, b.overdraft_nanos, b.expired_nanos,
                b.revoked_nanos, b.forfeited_nanos, b.remaining_nanos) == (
            self.m["issued"], self.m["consumed"], self.m["overdraft"], self.m["expired"],
            self.m["revoked"], self.m["forfeited"], remaining)
        assert b.conserved()


LedgerMachine.TestCase.settings = STATEFUL
TestLedgerMachine = LedgerMachine.TestCase


@PROPS
@given(event_lists(), st.data(), st.integers(0, 5), st.integers(-1, 16))
def test_balance_until_leaves_out_what_is_dated_later(events, data, lateness_h, until_h):
    """The worker publishes `balance(until=stream time)`: exact as of
    `as_of(until)`, never counting a pending event dated after `until`."""
    from compstream.domain.balance import Balance
    lateness = timedelta(hours=lateness_h)
    delays = [timedelta(minutes=data.draw(st.integers(0, 60 * lateness_h))) for _ in events]
    books, _out = _stream(events, delays, lateness, check_provisional=False)
    until = at(until_h)
    for eng, book in books.items():
        mine = [e for e in events if e.engineer_id == eng]
        as_of = book.as_of(until)
        if book.pending and book.pending[0][0][0] <= until:
            assert as_of <= until
        assert book.last_included(until) is None or event_time(book.last_included(until)) == as_of
        assert book.balance(until) == replay(mine, as_of).get(eng, Balance())
        later = sum(1 for _k, e in book.pending if event_time(e) > until)
        assert book.included(until) == len(book.pending) - later


@PROPS
@given(event_lists(), st.data(), st.integers(0, 5))
def test_a_live_book_balances_as_a_fresh_copy_does(events, data, lateness_h):
    """The worker keeps books alive between batches (worker/book_cache.py),
    so a book's provisional cache (the finalized ledger with a prefix of its
    pending events applied) lives across ingests, advances and balances with
    a `until` that leaves events scheduled ahead out, moves on and back. At
    every step its balance equals that of a copy made from its bytes (no
    cache)."""
    lateness = timedelta(hours=lateness_h)
    delays = [timedelta(minutes=data.draw(st.integers(0, 60 * lateness_h))) for _ in events]
    order = sorted(range(len(events)), key=lambda i: (event_time(events[i]) + delays[i], i))
    books: dict[str, EngineerBook] = {}
    max_seen = None
    for i in order:
        e = events[i]
        t = event_time(e)
        max_seen = t if max_seen is None else max(max_seen, t)
        book = books.setdefault(e.engineer_id, EngineerBook.empty(e.engineer_id))
        book.ingest(e, max_seen - lateness, want_balance=False)
        if data.draw(st.booleans()):
            book.advance(max_seen - lateness - timedelta(hours=data.draw(st.integers(0, 3))))
        for _ in range(data.draw(st.integers(0, 2))):
            until = None if data.draw(st.booleans()) else max_seen + timedelta(hours=data.draw(st.integers(-6, 6)))
            fresh = EngineerBook.from_bytes(book.to_bytes())
            assert book.balance(until) == fresh.balance(until)
