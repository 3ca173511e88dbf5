"""The auditor's pure chain checks, on hand-made record summaries (no broker)."""

from __future__ import annotations

import hashlib
import tracemalloc
from itertools import pairwise, permutations
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.audit.checks import ChainChecker, ChainKind, RecordSummary, Violation
from exchange.audit.replay import MAX_CHUNK, MIN_CHUNK, chunks
from exchange.audit.tally import EVERY_MEMBER, UNVERIFIED, Tally

T = "ncp.alerts.v1"
U = "ncp.indicators.v1"


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


class Chain:
    """Builds well-linked summaries for one sender on one topic."""

    def __init__(self, sender: str = "FR", topic: str = T) -> None:
        self.sender = sender
        self.topic = topic
        self.offset = 0

    def rec(
        self,
        seq: int,
        *,
        label: str | None = None,
        prev: str | None = None,
        partition: int = 0,
        offset: int | None = None,
        mid: str | None = None,
        recipients: tuple[str, ...] = (),
    ) -> RecordSummary:
        label = label or f"{self.sender}{self.topic}{seq}"
        if prev is None and seq > 1:
            prev = f"{self.sender}{self.topic}{seq - 1}"
        if offset is None:
            offset = self.offset
            self.offset += 1
        return RecordSummary(
            topic=self.topic,
            partition=partition,
            offset=offset,
            timestamp=1_700_000_000_000 + offset,
            sender=self.sender,
            message_type="OffenceAlert",
            message_id=mid or f"id-{label}",
            sequence=seq,
            previous_hash=h(prev) if prev else None,
            envelope_hash=h(label),
            recipients=recipients,
            tlp="GREEN",
            key_id="k1",
        )


def run(summaries: list[RecordSummary], *, anchored: bool = False) -> list[Violation]:
    checker = ChainChecker(anchored=anchored)
    checker.add_many(summaries)
    return checker.finish()


def kinds(violations: list[Violation]) -> list[tuple[str, int]]:
    return [(v.kind, v.offset) for v in violations]


def test_clean_chain_has_no_violation() -> None:
    """A chain 1..5 whose every previous hash links to the sequence before is clean."""
    c = Chain()
    assert run([c.rec(i) for i in range(1, 6)]) == []


def test_order_of_arrival_does_not_matter() -> None:
    """Chains spread over partitions are checked by sequence, whatever the arrival order."""
    c = Chain()
    recs = [c.rec(i, partition=i % 3) for i in range(1, 5)]
    for order in permutations(recs):
        assert run(list(order)) == []


def test_skipped_sequence_is_a_gap_naming_the_missing_number() -> None:
    """Sequences 1, 2, 4: a sequence_gap at sequence 4's record names sequence 3."""
    c = Chain()
    recs = [c.rec(1), c.rec(2), c.rec(4, prev=f"FR{T}3")]
    [v] = run(recs)
    assert (v.kind, v.offset, v.sender) == (ChainKind.SEQUENCE_GAP, 2, "FR")
    assert "sequence 3 of FR on ncp.alerts.v1 missing before sequence 4" in v.reason


def test_gap_names_the_missing_range() -> None:
    """Sequences 1, 2, 6: the gap names the range 3..5."""
    c = Chain()
    [v] = run([c.rec(1), c.rec(2), c.rec(6)])
    assert v.kind == ChainKind.SEQUENCE_GAP
    assert "sequence 3..5" in v.reason


def test_chain_not_starting_at_one_is_a_gap_from_one() -> None:
    """Replayed from the beginning, a chain starting at 3 has a gap 1..2."""
    c = Chain()
    [v] = run([c.rec(3), c.rec(4)])
    assert (v.kind, v.offset) == (ChainKind.SEQUENCE_GAP, 0)
    assert "sequence 1..2" in v.reason


def test_anchored_replay_accepts_a_later_first_sequence() -> None:
    """Replayed from a time (--since), the first message seen anchors the chain: no gap."""
    c = Chain()
    assert run([c.rec(7), c.rec(8)], anchored=True) == []


def test_anchored_replay_still_finds_later_gaps() -> None:
    """An anchored chain 7, 9 still has a gap at 8."""
    c = Chain()
    assert kinds(run([c.rec(7), c.rec(9)], anchored=True)) == [(ChainKind.SEQUENCE_GAP, 1)]


def test_fork_two_envelopes_with_one_sequence() -> None:
    """Two different envelopes with sequence 3 are a fork, reported at the later one."""
    c = Chain()
    recs = [c.rec(1), c.rec(2), c.rec(3), c.rec(3, label="other3"), c.rec(4)]
    [v] = run(recs)
    assert (v.kind, v.offset) == (ChainKind.FORK, 3)
    assert "sequence 3" in v.reason
    assert "2 different envelopes" in v.reason


def test_fork_branch_linking_is_not_a_chain_break() -> None:
    """A record linking to either branch of a fork is linked; only the fork is reported."""
    c = Chain()
    recs = [c.rec(1), c.rec(2), c.rec(2, label="alt2", prev=f"FR{T}1"), c.rec(3, prev="alt2")]
    assert kinds(run(recs)) == [(ChainKind.FORK, 2)]


def test_chain_break_previous_hash_mismatch() -> None:
    """A previous hash that is not the hash of sequence-1 is a chain_break at that record."""
    c = Chain()
    recs = [c.rec(1), c.rec(2), c.rec(3, prev="something else")]
    [v] = run(recs)
    assert (v.kind, v.offset) == (ChainKind.CHAIN_BREAK, 2)
    assert "is not the hash of sequence 2" in v.reason


def test_sequence_one_with_previous_hash_is_a_chain_break() -> None:
    """Sequence 1 links to nothing; a previous hash on it is a chain_break."""
    c = Chain()
    [v] = run([c.rec(1, prev="x")])
    assert v.kind == ChainKind.CHAIN_BREAK
    assert "sequence 1" in v.reason


def test_no_chain_break_reported_across_a_gap() -> None:
    """The record after a gap cannot be linked; only the gap is reported."""
    c = Chain()
    assert kinds(run([c.rec(1), c.rec(3, prev="whatever")])) == [(ChainKind.SEQUENCE_GAP, 1)]


def test_duplicate_message_id_with_different_content() -> None:
    """Two different messages with one message id: duplicate_message_id at the second."""
    c = Chain()
    recs = [c.rec(1, mid="same"), c.rec(2, mid="same")]
    [v] = run(recs)
    assert (v.kind, v.offset, v.message_id) == (ChainKind.DUPLICATE_MESSAGE_ID, 1, "same")
    assert "different content" in v.reason
    assert f"{T}[0]@0" in v.reason


def test_identical_resend_is_a_duplicate_not_a_fork() -> None:
    """A byte-identical re-send is a duplicate_message_id noted 'identical bytes', no fork."""
    c = Chain()
    first = c.rec(1)
    again = first._replace(offset=5)
    [v] = run([first, again, c.rec(2)])
    assert (v.kind, v.offset) == (ChainKind.DUPLICATE_MESSAGE_ID, 5)
    assert "identical bytes" in v.reason


def test_duplicate_message_id_across_topics() -> None:
    """Message ids are unique across the federation, not only within a topic."""
    a, b = Chain(topic=T), Chain(topic=U)
    [v] = run([a.rec(1, mid="m"), b.rec(1, mid="m")])
    assert (v.kind, v.topic) == (ChainKind.DUPLICATE_MESSAGE_ID, U)


def test_chains_are_per_sender_and_topic() -> None:
    """Each (sender, topic) has its own sequence: FR and DE both start at 1 on two topics."""
    recs = [Chain(s, t).rec(1) for s in ("FR", "DE") for t in (T, U)]
    assert run(recs) == []


def test_failed_verification_becomes_a_violation_of_its_reason() -> None:
    """A record that failed verification is reported with its reason code and detail."""
    bad = RecordSummary(
        T, 2, 9, 0, sender="FR", message_id="m", error_reason="bad_signature", error_detail="sig"
    )
    [v] = run([bad])
    assert (v.kind, v.partition, v.offset, v.sender) == ("bad_signature", 2, 9, "FR")
    assert v.reason.startswith("sig")
    assert "unverified" in v.reason


def test_failed_records_stay_out_of_the_chains() -> None:
    """A forged record claiming sequence 2 is neither a fork nor a duplicate id."""
    c = Chain()
    good = [c.rec(1), c.rec(2)]
    forged = good[1]._replace(offset=7, envelope_hash=None, error_reason="bad_signature")
    assert kinds(run([*good, forged])) == [("bad_signature", 7)]


def test_verified_summary_without_sender_is_refused() -> None:
    """A verified summary must carry sender and envelope hash: anything else is a bug."""
    with pytest.raises(ValueError, match="without sender"):
        ChainChecker().add(RecordSummary(T, 0, 0, 0))


def test_result_does_not_depend_on_arrival_order() -> None:
    """Violations are sorted, and 'first seen' means first in log order, not arrival."""
    c = Chain()
    recs = [
        c.rec(3, offset=9),
        c.rec(1, offset=4, mid="x"),
        c.rec(2, offset=2, mid="x"),
        c.rec(1, offset=1, label="fork1", mid="y"),
    ]
    found = run(recs)
    assert found == sorted(found, key=Violation.sort_key)
    assert kinds(found) == [(ChainKind.DUPLICATE_MESSAGE_ID, 4), (ChainKind.FORK, 4)]
    for order in permutations(recs):
        assert run(list(order)) == found


def test_violation_as_dict_is_self_describing() -> None:
    """A violation's JSON form names kind, place, sender, message id and reason."""
    v = Violation(T, 1, 2, "fork", "why", "FR", "m")
    assert v.as_dict() == {
        "kind": "fork",
        "topic": T,
        "partition": 1,
        "offset": 2,
        "sender": "FR",
        "message_id": "m",
        "reason": "why",
    }


def test_tally_counts_by_topic_sender_type_and_recipients() -> None:
    """The tally counts verified records by sender/type/TLP and rejected ones per topic."""
    c = Chain()
    good = [c.rec(1), c.rec(2, recipients=("DE", "NL"))]
    bad = RecordSummary(U, 0, 0, 1_600_000_000_000, error_reason="malformed")
    tally = Tally()
    tally.add_many([*good, bad])
    d = tally.as_dict()
    assert (d["records"], d["verified"], d["rejected"]) == (3, 2, 1)
    assert d["by_topic"] == {
        T: {"records": 2, "verified": 2, "rejected": 0},
        U: {"records": 1, "verified": 0, "rejected": 1},
    }
    assert d["by_sender"] == {"FR": 2}
    assert d["by_message_type"] == {"OffenceAlert": 2}
    assert d["shared_with"] == {"FR": {EVERY_MEMBER: 1, "DE": 1, "NL": 1}}
    assert tally.time_range()["first"] == "2020-09-13T12:26:40.000+00:00"
    assert set(tally.times) == {"FR", UNVERIFIED}


def test_tally_merge_equals_counting_everything_at_once() -> None:
    """Tallies counted batch by batch (in workers) and merged equal one tally of all records."""
    c, d = Chain("FR"), Chain("DE", U)
    recs = [c.rec(1), d.rec(1, recipients=("FR",)), c.rec(2)]
    recs.append(RecordSummary(T, 0, 9, 1_600_000_000_000, error_reason="malformed"))
    whole, merged = Tally(), Tally()
    whole.add_many(recs)
    for part in (recs[:1], recs[1:3], recs[3:]):
        t = Tally()
        t.add_many(part)
        merged.merge(t)
    assert merged.as_dict() == whole.as_dict()
    assert merged.time_range() == whole.time_range()
    assert {m: list(ts) for m, ts in merged.times.items()} == {
        m: list(ts) for m, ts in whole.times.items()
    }


def test_topics_whose_oldest_records_are_gone_anchor_their_chains() -> None:
    """On a topic read after retention removed its start, chains need not start at 1."""
    a, b = Chain(topic=T), Chain(topic=U)
    checker = ChainChecker()
    checker.add_many([a.rec(5), a.rec(6), b.rec(5)])
    found = checker.finish(anchored_topics={T})
    assert [(v.kind, v.topic) for v in found] == [(ChainKind.SEQUENCE_GAP, U)]


@given(
    lengths=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    seed=st.randoms(use_true_random=False),
)
def test_any_arrival_order_of_clean_chains_is_clean(lengths: list[int], seed: Random) -> None:
    """Property: clean chains of any lengths, arriving in any order, raise nothing."""
    recs: list[RecordSummary] = []
    for i, n in enumerate(lengths):
        c = Chain(f"S{i}")
        recs += [c.rec(k, partition=k % 3) for k in range(1, n + 1)]
    seed.shuffle(recs)
    assert run(recs) == []


@given(
    length=st.integers(2, 30),
    data=st.data(),
)
def test_gaps_name_exactly_the_deleted_sequences(length: int, data: st.DataObject) -> None:
    """Property: deleting sequences before the last one yields gaps naming exactly them."""
    deleted = data.draw(st.sets(st.integers(1, length - 1), min_size=1))
    c = Chain()
    recs = [c.rec(k) for k in range(1, length + 1) if k not in deleted]
    found = run(recs)
    named: set[int] = set()
    for v in found:
        assert v.kind == ChainKind.SEQUENCE_GAP
        span = v.reason.split("sequence ")[1].split(" of ")[0]
        lo, _, hi = span.partition("..")
        named |= set(range(int(lo), int(hi or lo) + 1))
    assert named == deleted


def test_chunks_cover_every_offset_once_partitions_advancing_together() -> None:
    """A replay's pieces cover each range exactly once, the fullest range cut first."""
    ranges = [(T, 0, 0, 3000), (T, 1, 100, 1600), (U, 0, 5, 6)]
    pieces = chunks(ranges, 1)
    for topic, partition, start, end in ranges:
        mine = [(s, e) for t, p, s, e in pieces if (t, p) == (topic, partition)]
        assert mine[0][0] == start
        assert mine[-1][1] == end
        assert all(a[1] == b[0] for a, b in pairwise(mine))
    assert [p[:2] for p in pieces[:3]] == [(T, 0), (T, 1), (T, 0)]
    ends = {e for *_, e in ranges}
    assert all(e - s >= MIN_CHUNK or e in ends for *_, s, e in pieces)


def test_chunks_shrink_towards_the_end_of_the_replay() -> None:
    """Pieces start large and end at the minimum size, so the workers finish together."""
    ranges = [(T, p, 0, 66_667) for p in range(3)]
    pieces = chunks(ranges, 2)
    sizes = [e - s for *_, s, e in pieces]
    assert sum(sizes) == 3 * 66_667
    assert sizes[0] == MAX_CHUNK
    assert all(a >= b for a, b in pairwise(sizes[:-3]))  # the last of each range may be less
    assert min(sizes[-6:]) <= MIN_CHUNK
    assert len(pieces) < 40


def test_huge_sequence_number_is_a_gap_without_memory_per_missing_number() -> None:
    """A sequence far beyond the chain (here 2**62) is one gap; nothing is kept per number."""
    c = Chain()
    found = run([c.rec(1), c.rec(2**62, prev="elsewhere")])
    assert [(v.kind, v.offset) for v in found] == [(ChainKind.SEQUENCE_GAP, 1)]
    assert f"sequence 2..{2**62 - 1} of FR" in found[0].reason


def test_a_flood_of_bad_records_is_counted_but_listed_only_up_to_the_limit() -> None:
    """Past max_listed, refused records are counted by reason and not kept: 100,000 bad
    records cost the checker no more memory than the first few it lists."""
    checker = ChainChecker(max_listed=50)
    garbage = "garbage " * 1000  # a long reason: kept capped even when listed

    def flood(first: int, count: int) -> None:
        for offset in range(first, first + count):
            checker.add(
                RecordSummary(T, 0, offset, 0, error_reason="malformed", error_detail=garbage)
            )

    flood(0, 1000)  # warm up: the listed ones, interned strings
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        flood(1000, 100_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024
    listed = checker.finish()
    assert len(listed) == 50
    assert all(len(v.reason) <= 600 for v in listed)
    assert checker.unlisted == {"malformed": 101_000 - 50}


def test_a_member_making_every_record_a_violation_is_listed_only_up_to_the_limit() -> None:
    """A member that skips a sequence number at every record makes a gap of each: past
    max_listed they are counted by kind, the first by place are listed, and finding them
    does not hold them all (20,000 gaps would take about 5 MB)."""
    c = Chain()
    checker = ChainChecker(max_listed=50)
    checker.add_many([c.rec(2 * i + 1, prev=f"nothing{i}" if i else None) for i in range(20_000)])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        listed = checker.finish()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert [(v.kind, v.offset) for v in listed] == [
        (ChainKind.SEQUENCE_GAP, offset) for offset in range(1, 51)
    ]
    assert checker.unlisted == {ChainKind.SEQUENCE_GAP: 19_999 - 50}
    assert peak < 1024 * 1024, peak
