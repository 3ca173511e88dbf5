"""The end of a replay reads each chain back in windows of sequences, never whole.

Verified records go to scratch files a run at a time, each run sorted by sequence and
written in pieces; :meth:`ChainChecker.finish` merges a chain's runs a piece at a time.
With a tiny run and a tiny piece, every check here crosses many windows: a gap, a
fork, a re-send, a reused id or a broken link that falls across a window boundary is
found exactly as when the whole chain is in memory, and the memory the end of a replay
holds does not grow with the longest chain.
"""

from __future__ import annotations

import tracemalloc
from array import array
from random import Random

import pytest

import exchange.audit.spill
from exchange.audit.chains import Block, Columns
from exchange.audit.checks import ChainChecker, ChainKind, RecordSummary, Violation
from exchange.audit.spill import Spill
from tests.audit.test_checks_spill import T, U, block, h, mid

PIECE = 8  # records a piece: windows of a few records


@pytest.fixture(autouse=True)
def tiny_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exchange.audit.spill, "PIECE_RECORDS", PIECE)


def at(b: Block, offset: int, timestamp: int | None = None) -> Block:
    """``b`` (one record) moved to ``offset`` (and ``timestamp``), as a later re-send or fork."""
    ts = 1_700_000_000_000 + offset if timestamp is None else timestamp
    return b._replace(offsets=array("q", [offset]).tobytes(), timestamps=array("q", [ts]).tobytes())


def checked(blocks: list[Block], run_records: int) -> tuple[list[Violation], ChainChecker]:
    checker = ChainChecker(run_records=run_records)
    for b in blocks:
        checker.add_block(b)
    return checker.finish(), checker


def same_as_in_memory(blocks: list[Block], run_records: int = PIECE) -> list[Violation]:
    """The violations with tiny runs and pieces, asserted equal to the all-in-memory ones."""
    windowed, checker = checked(blocks, run_records)
    assert checker.spilled > 0
    whole, in_memory = checked(blocks, 10**9)
    assert in_memory.spilled == 0
    assert windowed == whole
    return windowed


def columns(b: Block) -> Columns:
    c = Columns()
    c.extend(b)
    return c


def in_order(
    sender: str, topic: str, seqs: list[int], size: int = PIECE, **kw: object
) -> list[Block]:
    return [block(sender, topic, seqs[i : i + size], **kw) for i in range(0, len(seqs), size)]  # type: ignore[arg-type]


def test_windows_give_every_record_once_by_ascending_sequence_groups_whole() -> None:
    """Runs of shuffled sequences with repeats, merged: each record once, windows in
    ascending order, every record of one sequence in the same window."""
    rng = Random(11)
    spill = Spill(piece_records=4)
    seqs: list[int] = []
    for _ in range(9):  # nine runs, overlapping ranges, some sequences repeated
        run = [rng.randrange(1, 120) for _ in range(rng.randrange(1, 40))]
        seqs += run
        spill.dump(0, columns(block("FR", T, run)))
    seen: list[int] = []
    last = 0
    for window in spill.windows(0):
        assert len(window) > 0
        assert min(window.sequences) > last
        last = max(window.sequences)
        seen += window.sequences
    spill.close()
    assert sorted(seen) == sorted(seqs)


def test_a_run_is_read_only_when_the_merge_reaches_it() -> None:
    """Runs that follow one another (a chain read in about sequence order): the merge
    holds one piece at a time, not one per run."""
    spill = Spill(piece_records=4)
    for start in range(1, 401, 40):  # ten runs of 40 records, one after the other
        spill.dump(0, columns(block("FR", T, list(range(start, start + 40)))))
    sizes = [len(w) for w in spill.windows(0)]
    spill.close()
    assert sum(sizes) == 400
    assert max(sizes) <= 4


def test_a_gap_at_a_window_boundary_is_found_once() -> None:
    """Sequences 1..100 without 17 (between the windows 9..16 and 18..25) and 33..41:
    each missing range once, at the record after it."""
    seqs = [s for s in range(1, 101) if s != 17 and not 33 <= s <= 41]
    violations = same_as_in_memory(in_order("FR", T, seqs))
    assert [(v.kind, v.offset, v.reason) for v in violations] == [
        (
            ChainKind.SEQUENCE_GAP,
            18,
            "sequence 17 of FR on ncp.alerts.v1 missing before sequence 18",
        ),
        (
            ChainKind.SEQUENCE_GAP,
            42,
            "sequence 33..41 of FR on ncp.alerts.v1 missing before sequence 42",
        ),
    ]


def test_a_fork_whose_envelopes_are_runs_apart_is_one_fork() -> None:
    """Sequence 16 (the last of a piece) has a second envelope that arrives 200 records
    later, in another run: both are merged into one window and named as one fork."""
    blocks = in_order("FR", T, list(range(1, 201)))
    fork = block("FR", T, [16], labels={16: "another sixteen"}, mids={16: mid("X", T, 16)})
    violations = same_as_in_memory([*blocks, at(fork, 1016)])
    assert [(v.kind, v.offset) for v in violations] == [(ChainKind.FORK, 1016)]
    assert "differs from ncp.alerts.v1[1]@16" in violations[0].reason


def test_a_resend_runs_later_is_a_duplicate_not_a_fork() -> None:
    """A byte-identical re-send of sequence 8 two hundred records later: a duplicate id,
    "identical bytes", first seen at its original place."""
    blocks = in_order("FR", T, list(range(1, 201)))
    violations = same_as_in_memory([*blocks, at(block("FR", T, [8]), 2008)])
    assert [(v.kind, v.offset) for v in violations] == [(ChainKind.DUPLICATE_MESSAGE_ID, 2008)]
    assert "first seen at ncp.alerts.v1[2]@8: identical bytes" in violations[0].reason


def test_a_broken_link_to_the_previous_window_names_that_record() -> None:
    """Sequence 9 (first of the second window) links elsewhere: the break names
    sequence 8, the last record of the window before, by hash and place; the links
    across every other window boundary hold."""
    blocks = in_order("FR", T, list(range(1, 101)), prevs={9: "elsewhere"})
    violations = same_as_in_memory(blocks)
    assert [(v.kind, v.offset) for v in violations] == [(ChainKind.CHAIN_BREAK, 9)]
    assert "is not the hash of sequence 8" in violations[0].reason
    assert "at ncp.alerts.v1[2]@8)" in violations[0].reason


def test_a_fork_before_a_window_boundary_links_either_envelope() -> None:
    """Sequence 8 has two envelopes and 9 (the next window) links to the later one: no
    break, as 9 links to one of sequence 8's envelopes; the fork is named."""
    blocks = in_order("FR", T, list(range(1, 101)), prevs={9: "FR fork eight"})
    fork = block("FR", T, [8], labels={8: "FR fork eight"}, mids={8: mid("Y", T, 8)})
    violations = same_as_in_memory([at(fork, 508), *blocks])
    assert [(v.kind, v.offset) for v in violations] == [(ChainKind.FORK, 508)]


def test_many_chains_with_every_fault_find_what_memory_finds() -> None:
    """Three senders on two topics, shuffled blocks, deletions, forks, re-sends and
    reused ids, 3 records a run and 8 a piece, over ten seeds: the same violations, in
    the same order and words, as with every chain held whole."""
    for seed in range(10):
        rng = Random(seed)
        blocks: list[Block] = []
        for sender in ("FR", "DE", "NL"):
            for topic in (T, U):
                seqs = [s for s in range(1, 90) if rng.random() > 0.05]
                forks = {s: f"fork{s}" for s in rng.sample(seqs, 2)}
                reused = {s: mid(sender, T, s + 1) for s in rng.sample(seqs, 2)}
                breaks = {s: "elsewhere" for s in rng.sample(seqs, 2)}
                rng.shuffle(seqs)
                for i in range(0, len(seqs), 7):
                    blocks.append(block(sender, topic, seqs[i : i + 7], mids=reused, prevs=breaks))
                forked = sorted(forks)
                fb = block(sender, topic, forked, labels=forks)
                blocks.append(fb._replace(offsets=array("q", [5000 + s for s in forked]).tobytes()))
                resent = block(sender, topic, [rng.choice(seqs)])
                blocks.append(resent._replace(offsets=array("q", [7000]).tobytes()))
        rng.shuffle(blocks)
        violations = same_as_in_memory(blocks, run_records=3)
        kinds = {v.kind for v in violations}
        assert kinds == {
            ChainKind.SEQUENCE_GAP,
            ChainKind.FORK,
            ChainKind.CHAIN_BREAK,
            ChainKind.DUPLICATE_MESSAGE_ID,
        }, seed


def test_an_anchored_chain_starts_at_its_first_window() -> None:
    """A replay from a time (anchored): the chain starts at 51, in the first window; a
    gap after it, windows later, is still found."""
    seqs = [s for s in range(51, 151) if s != 120]
    checker = ChainChecker(anchored=True, run_records=5)
    whole = ChainChecker(anchored=True)
    for b in in_order("FR", T, seqs):
        checker.add_block(b)
        whole.add_block(b)
    violations = checker.finish()
    assert violations == whole.finish()
    assert [(v.kind, v.offset) for v in violations] == [(ChainKind.SEQUENCE_GAP, 121)]


def test_the_end_of_a_replay_holds_a_window_not_the_longest_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One sender writes 60,000 of 61,000 records (6.7 MB of columns): with 2,000 held at
    a time and pieces of 1,024 (115 kB), ``finish`` allocates under 1 MB at its peak, and
    a gap near the end is found."""
    monkeypatch.setattr(exchange.audit.spill, "PIECE_RECORDS", 1024)
    checker = ChainChecker(run_records=2000)
    seqs = [s for s in range(1, 60_001) if s != 59_999]
    for b in in_order("FR", T, seqs, size=500):
        checker.add_block(b)
    for sender in ("DE", "NL"):
        for b in in_order(sender, T, list(range(1, 501)), size=500):
            checker.add_block(b)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        violations = checker.finish()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
        checker.close()
    assert [(v.kind, v.offset) for v in violations] == [(ChainKind.SEQUENCE_GAP, 60_000)]
    assert peak < 1_000_000, peak


def test_columns_cut_keeps_odd_values_with_their_records() -> None:
    """Cutting columns moves the records without a previous hash and the text ids with
    their records (summaries' ids are kept aside, by index)."""
    c = Columns()
    c.extend(block("FR", T, [1, 2, 3, 4]))
    c.odd_mids = {1: "id-2", 3: "id-4"}
    head = c.cut(2)
    assert list(head.sequences) == [1, 2]
    assert head.no_previous == {0}
    assert head.odd_mids == {1: "id-2"}
    assert list(c.sequences) == [3, 4]
    assert c.no_previous == set()
    assert c.odd_mids == {1: "id-4"}


def test_shuffled_summaries_keep_their_text_ids_and_missing_links_when_sorted() -> None:
    """Summaries (text ids, kept aside by index) arriving shuffled, sorted run by run:
    a reused text id, a first record with no previous hash and a later one without
    one are found as with every record in memory."""
    summaries = [
        RecordSummary(
            T,
            0,
            s,
            1_700_000_000_000 + s,
            "FR",
            "OffenceAlert",
            f"id-{s}",
            s,
            None if s in (1, 50) else h(f"r{s - 1}"),
            h(f"r{s}"),
        )
        for s in range(1, 101)
    ]
    summaries.append(summaries[41]._replace(offset=500, timestamp=1_700_000_000_500))
    Random(3).shuffle(summaries)
    windowed, whole = ChainChecker(run_records=9), ChainChecker()
    windowed.add_many(summaries)
    whole.add_many(summaries)
    violations = windowed.finish()
    assert windowed.spilled > 0
    assert violations == whole.finish()
    assert [(v.kind, v.offset, v.message_id) for v in violations] == [
        (ChainKind.CHAIN_BREAK, 50, "id-50"),
        (ChainKind.DUPLICATE_MESSAGE_ID, 500, "id-42"),
    ]
