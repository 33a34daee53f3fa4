"""Idempotency, restatements, attribution and repricing through the journal."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

from compstream.domain.events import Usage
from compstream.ingest.identity import UNATTRIBUTED, IdentityConfigError, IdentityMap
from compstream.ingest.journal import Journal
from compstream.ingest.pipeline import Converter, reprice, reprice_events
from compstream.ingest.pricing import Price

from .conftest import ADAPTERS, fixture_path


def _by_model(events):
    return {e.model: e for e in events}


def test_ingest_twice_is_a_noop(ingest, journal):
    first, s1 = ingest("openai", "openai_usage_page1.json", "openai_usage_page2.json")
    snapshot = journal.snapshot()
    second, s2 = ingest("openai", "openai_usage_page1.json", "openai_usage_page2.json")
    assert len(first) == 5 and s1.originals == 5
    assert second == [] and s2.unchanged == 5 and s2.events == 0
    assert journal.snapshot() == snapshot


def test_same_ids_across_fresh_journals(tmp_path, identity_map):
    def run(path):
        with Journal(path) as j:
            conv = Converter(j, identity_map)
            text = fixture_path("anthropic_messages.json").read_text()
            return [e.event_id for e in conv.convert(ADAPTERS["anthropic"](text, "a.json"))]

    assert run(tmp_path / "a.sqlite") == run(tmp_path / "b.sqlite")


def test_dry_run_rollback_leaves_journal_empty(ingest, journal):
    events, _ = ingest("gcp", "gcp_billing.csv", commit=False)
    assert events and journal.count() == 0


def test_attribution_precedence_agents_and_unattributed(ingest):
    events, summary = ingest("openai", "openai_usage_page1.json", "openai_usage_page2.json")
    engineers = [e.engineer_id for e in events]
    # key_alice_laptop -> e1 (api key beats project proj_platform -> e9)
    # key_triage_agent -> agent:triage -> e1 ; key_summariser_subagent -> agent:triage/summariser -> agent:triage -> e1
    # key_unknown/user-stranger/proj_sandbox -> unattributed ; key_bob unmapped but user-bob -> e2
    assert engineers == ["e1", "e1", "e1", UNATTRIBUTED, "e2"]
    assert summary.unattributed == 1


def test_gcp_label_precedence(ingest):
    events, summary = ingest("gcp", "gcp_billing.csv")
    by_cache = [e for e in events if e.cache_read_tokens]
    assert by_cache[0].engineer_id == "e6"  # agent label beats engineer label
    assert {e.engineer_id for e in events} == {"e4", "e6", UNATTRIBUTED}
    assert summary.skipped == 3


def test_gcp_restatement_yields_one_linked_correction(ingest, journal):
    originals, _ = ingest("gcp", "gcp_billing.csv")
    original = next(e for e in originals if e.input_tokens == 1_000_000 and e.model == "gemini-2.5-pro")
    events, summary = ingest("gcp", "gcp_billing_restated.csv")
    assert summary.corrections == 1 and len(events) == 1
    corr = events[0]
    assert corr.corrects_event_id == original.event_id
    assert corr.event_id.startswith(original.event_id + ":r2-")
    assert corr.engineer_id == original.engineer_id
    assert corr.input_tokens == 200_000 and corr.output_tokens == 0
    assert corr.cost_nanos == 250_000_000  # 1.50 - 1.25 USD
    # the same restated export again: nothing new
    again, s = ingest("gcp", "gcp_billing_restated.csv")
    assert again == [] and s.unchanged == 1
    # an older export arriving late is stale, not a restatement
    stale, s = ingest("gcp", "gcp_billing_stale.csv")
    assert stale == [] and s.stale == 1


def test_restatement_downwards_gives_negative_deltas(ingest, tmp_path, identity_map, journal):
    ingest("gcp", "gcp_billing_restated.csv")  # 1.2M tokens, $1.50 booked first
    # now the earlier-numbered row with a newer export_time restates downwards
    text = fixture_path("gcp_billing_restated.csv").read_text().replace("2026-03-02T06:00:00Z", "2026-03-03T06:00:00Z")
    text = text.replace(",1.5,USD,1200000,", ",1.0,USD,800000,")
    conv = Converter(journal, identity_map)
    events = list(conv.convert(ADAPTERS["gcp"](text, "restated-down.csv")))
    assert len(events) == 1
    assert events[0].input_tokens == -400_000 and events[0].cost_nanos == -500_000_000


def test_flip_flop_corrections_get_distinct_ids(ingest, journal, identity_map):
    base = fixture_path("gcp_billing_restated.csv").read_text()
    ids = []
    for n, (cost, amount) in enumerate([("1.5", "1200000"), ("1.0", "800000"), ("1.5", "1200000"), ("1.0", "800000")]):
        text = (base.replace("2026-03-02T06:00:00Z", f"2026-03-0{n + 2}T07:00:00Z")
                .replace(",1.5,USD,1200000,", f",{cost},USD,{amount},"))
        conv = Converter(journal, identity_map)
        ids += [e.event_id for e in conv.convert(ADAPTERS["gcp"](text, f"x{n}.csv"))]
        journal.commit()
    assert len(ids) == 4 and len(set(ids)) == 4


def test_unknown_model_is_unpriced_then_repriced(ingest, journal):
    events, summary = ingest("openai", "openai_usage_page2.json")
    unpriced = [e for e in events if e.cost_nanos is None]
    assert len(unpriced) == 1 and summary.unpriced == 1
    assert "gpt-99-hyperion-preview" in unpriced[0].unpriced_reason

    def pricer(provider, model, occurred_at, tokens, context):
        if model == "gpt-99-hyperion-preview":
            return Price(tokens.input * 10 + tokens.output * 20, "test-prices/1")
        return Price(None, "test-prices/1", "still unknown")

    corrections = list(reprice(journal, pricer))
    journal.commit()
    assert len(corrections) == 1
    c = corrections[0]
    assert c.corrects_event_id == unpriced[0].event_id
    assert c.cost_nanos == 10_000 * 10 + 500 * 20
    assert (c.input_tokens, c.output_tokens) == (0, 0)
    assert list(reprice(journal, pricer)) == []  # nothing left unpriced


def test_reprice_events_without_journal():
    event = Usage("x:1", "e1", "openai", "gpt-4o", datetime(2026, 3, 1, tzinfo=timezone.utc),
                  1_000_000, 0, 0, 0, None, unpriced_reason="unknown model")
    out = reprice_events([event, dataclasses.replace(event, event_id="x:2", cost_nanos=5)])
    assert len(out) == 1
    assert out[0].corrects_event_id == "x:1" and out[0].cost_nanos == 2_500_000_000
    assert reprice_events([event])[0].event_id == out[0].event_id


def test_jsonl_agent_engineer_resolves_to_owner(ingest):
    events, summary = ingest("jsonl", "canonical_usage.jsonl")
    assert [e.engineer_id for e in events] == ["e1", "e1", "e2"]
    assert events[1].cost_nanos == 123_456_789 and events[1].price_version == "internal-meter/3"
    assert events[0].cost_nanos is not None and events[2].cost_nanos is None


def test_journal_rebuild_from_events_keeps_ingest_idempotent(ingest, tmp_path, identity_map):
    events, _ = ingest("anthropic", "anthropic_messages.json")
    with Journal(tmp_path / "rebuilt.sqlite") as rebuilt:
        assert rebuilt.rebuild(events).rows == 3
        rebuilt.commit()
        conv = Converter(rebuilt, identity_map)
        text = fixture_path("anthropic_messages.json").read_text()
        again = list(conv.convert(ADAPTERS["anthropic"](text, "a.json")))
        assert again == [] and conv.summary.unchanged == 3


def _convert(journal, identity_map, source, name, text=None):
    conv = Converter(journal, identity_map)
    text = fixture_path(name).read_text() if text is None else text
    events = list(conv.convert(ADAPTERS[source](text, name)))
    journal.commit()
    return events, conv.summary


def _topic_of(journal, events):
    """(event, revision marker) as a topic written by ingest carries them."""
    return [(e, journal.get(e.corrects_event_id or e.event_id).revision_marker) for e in events]


def test_rebuilt_journal_ignores_an_older_gcp_export_like_the_original(tmp_path, identity_map):
    with Journal(tmp_path / "kept.sqlite") as kept:
        first, _ = _convert(kept, identity_map, "gcp", "gcp_billing.csv")
        topic = _topic_of(kept, first)
        restated, _ = _convert(kept, identity_map, "gcp", "gcp_billing_restated.csv")
        topic += _topic_of(kept, restated)
        assert len(restated) == 1
        with Journal(tmp_path / "rebuilt.sqlite") as rebuilt:
            stats = rebuilt.rebuild_marked(topic)
            rebuilt.commit()
            assert (stats.rows, stats.events, stats.duplicates) == (4, 5, 0)
            for name in ("gcp_billing.csv", "gcp_billing_stale.csv", "gcp_billing_restated.csv"):
                want, want_summary = _convert(kept, identity_map, "gcp", name)
                got, got_summary = _convert(rebuilt, identity_map, "gcp", name)
                assert got == want == []
                assert (got_summary.stale, got_summary.unchanged) == (want_summary.stale, want_summary.unchanged)
            assert _convert(rebuilt, identity_map, "gcp", "gcp_billing.csv")[1].stale >= 1


def test_rebuild_without_markers_cannot_tell_an_older_gcp_export(tmp_path, identity_map):
    # Records published before the marker header existed: the documented limit.
    with Journal(tmp_path / "kept.sqlite") as kept:
        events = _convert(kept, identity_map, "gcp", "gcp_billing.csv")[0]
        events += _convert(kept, identity_map, "gcp", "gcp_billing_restated.csv")[0]
    with Journal(tmp_path / "rebuilt.sqlite") as rebuilt:
        rebuilt.rebuild(events)
        rebuilt.commit()
        back, _ = _convert(rebuilt, identity_map, "gcp", "gcp_billing.csv")
        assert len(back) == 1 and back[0].corrects_event_id is not None


def test_rebuild_counts_a_repeated_event_once_and_replaces_old_rows(tmp_path, identity_map):
    with Journal(tmp_path / "kept.sqlite") as kept, Journal(tmp_path / "rebuilt.sqlite") as rebuilt:
        events, _ = _convert(kept, identity_map, "anthropic", "anthropic_messages.json")
        rebuilt.rebuild(events[:1])
        rebuilt.commit()
        stats = rebuilt.rebuild(events + events)  # the export was sent twice without a journal
        rebuilt.commit()
        assert (stats.rows, stats.events, stats.duplicates) == (3, 3, 3)
        # id, revision, tokens, booked cost
        def cols(r):
            return r[:1] + r[4:5] + r[7:9]

        assert [cols(r) for r in rebuilt.snapshot()] == [cols(r) for r in kept.snapshot()]
        assert _convert(rebuilt, identity_map, "anthropic", "anthropic_messages.json")[0] == []


def test_restatement_after_a_rebuild_books_the_same_delta(tmp_path, identity_map):
    text = fixture_path("anthropic_messages.json").read_text()
    restated = text.replace('"output_tokens": 80000', '"output_tokens": 90000', 1)
    assert restated != text
    with Journal(tmp_path / "kept.sqlite") as kept:
        events, _ = _convert(kept, identity_map, "anthropic", "a.json", text)
        with Journal(tmp_path / "rebuilt.sqlite") as rebuilt:
            rebuilt.rebuild(events)
            rebuilt.commit()
            (want,) = _convert(kept, identity_map, "anthropic", "a.json", restated)[0]
            (got,) = _convert(rebuilt, identity_map, "anthropic", "a.json", restated)[0]
    assert got.corrects_event_id == want.corrects_event_id
    assert ((got.output_tokens, got.input_tokens, got.cost_nanos)
            == (want.output_tokens, want.input_tokens, want.cost_nanos))
    assert got.output_tokens == 10_000 and got.cost_nanos > 0


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"owners": {}}, "missing 'version'"),
        ({"version": 1, "owners": {"agent:a": "agent:b", "agent:b": "agent:a"}}, "owner cycle"),
        ({"version": 1, "openai": {"api_key_id": {"k": "agent:orphan"}}}, "has no owner"),
        ({"version": 1, "owners": {f"agent:{i}": f"agent:{i + 1}" for i in range(12)} | {"agent:12": "e1"}},
         "longer than"),
        ({"version": 1, "openai": {"team_id": {}}}, "unknown key"),
    ],
)
def test_identity_map_validation(doc, message):
    with pytest.raises(IdentityConfigError, match=message):
        IdentityMap.from_dict(doc)


def test_example_identity_map_loads():
    example = fixture_path("identity.toml").parents[3] / "examples" / "identity.toml"
    m = IdentityMap.load(example)
    assert m.version
