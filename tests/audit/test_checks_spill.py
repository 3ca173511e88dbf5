"""The chain checks move verified records to disk: memory stays flat, nothing is missed.

Blocks as the verification workers send them (:class:`~exchange.audit.chains.Block`),
thousands of records arriving out of order, with a small ``run_records`` so that they
go to the scratch files many times over: a duplicate message id, a gap, a fork and a
broken link are still found, each exactly once, the same as when everything stays in
memory; and memory stops growing with the records checked.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from array import array
from pathlib import Path
from random import Random

import pytest

import exchange.audit.spill
from exchange.audit.chains import HASH, Block
from exchange.audit.checks import ChainChecker, ChainKind, RecordSummary

T = "ncp.alerts.v1"
U = "ncp.indicators.v1"


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def mid(sender: str, topic: str, seq: int) -> bytes:
    return hashlib.md5(f"{sender}{topic}{seq}".encode()).digest()  # noqa: S324  (an id only)


def block(
    sender: str,
    topic: str,
    seqs: list[int],
    *,
    mids: dict[int, bytes] | None = None,
    labels: dict[int, str] | None = None,
    prevs: dict[int, str] | None = None,
) -> Block:
    """Well-linked records ``seqs`` of one chain (offset = sequence), with overrides."""
    mids, labels, prevs = mids or {}, labels or {}, prevs or {}
    previous, hashes, ids = bytearray(), bytearray(), bytearray()
    for s in seqs:
        prev = prevs.get(s, f"{sender}{topic}{s - 1}")
        previous += h(prev) if s > 1 else bytes(HASH)
        hashes += h(labels.get(s, f"{sender}{topic}{s}"))
        ids += mids.get(s, mid(sender, topic, s))
    return Block(
        sender,
        topic,
        array("q", seqs).tobytes(),
        array("q", [1_700_000_000_000 + s for s in seqs]).tobytes(),
        array("q", [s % 3 for s in seqs]).tobytes(),
        array("q", seqs).tobytes(),
        bytes(ids),
        bytes(previous),
        bytes(hashes),
        tuple(i for i, s in enumerate(seqs) if s == 1),
    )


def shuffled_blocks(
    sender: str, topic: str, n: int, size: int, seed: int, **kw: object
) -> list[Block]:
    """Records 1..n of a chain cut into blocks of ``size``, the blocks in a random order."""
    seqs = list(range(1, n + 1))
    Random(seed).shuffle(seqs)
    return [block(sender, topic, seqs[i : i + size], **kw) for i in range(0, n, size)]  # type: ignore[arg-type]


def found(checker: ChainChecker) -> list[tuple[str, str, int]]:
    return [(v.kind, v.topic, v.offset) for v in checker.finish()]


def test_a_duplicate_id_and_a_gap_are_found_among_many_spilled_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """20k records in shuffled blocks, their ids written to the bucket files 4 KB at a time:
    one id reused across topics and one missing sequence are found."""
    monkeypatch.setattr(exchange.audit.spill, "KEY_BUFFER_BYTES", 4096)
    n = 20_000
    checker = ChainChecker(run_records=1000)
    reused = mid("FR", T, 777)
    seqs = [s for s in range(1, n + 1) if s != 4242]  # 4242 deleted from the log
    Random(1).shuffle(seqs)
    for i in range(0, len(seqs), 500):
        checker.add_block(block("FR", T, seqs[i : i + 500]))
    for b in shuffled_blocks("FR", U, 1000, 100, seed=2, mids={500: reused}):
        checker.add_block(b)
    for b in shuffled_blocks("DE", T, 1000, 100, seed=3, mids={9: reused}):  # another sender
        checker.add_block(b)
    assert checker.spilled + checker.held == n - 1 + 2000
    assert checker.spilled > n - 1000
    assert found(checker) == [
        (ChainKind.DUPLICATE_MESSAGE_ID, T, 777),  # later than its use on U at 500
        (ChainKind.SEQUENCE_GAP, T, 4243),
    ]


def test_a_fork_a_resend_and_a_broken_link_are_named_once_each() -> None:
    """Two envelopes for sequence 10, a byte-identical re-send of 20 and a bad link at 30."""
    checker = ChainChecker(run_records=20)
    for b in shuffled_blocks("FR", T, 100, 7, seed=4, prevs={30: "elsewhere"}):
        checker.add_block(b)
    fork = block("FR", T, [10], labels={10: "another ten"}, mids={10: mid("X", T, 10)})
    resend = block("FR", T, [20])
    checker.add_block(fork._replace(offsets=array("q", [1010]).tobytes()))
    checker.add_block(
        resend._replace(
            offsets=array("q", [1020]).tobytes(),
            timestamps=array("q", [1_700_000_001_020]).tobytes(),
        )
    )
    violations = checker.finish()
    assert [(v.kind, v.offset) for v in violations] == [
        (ChainKind.CHAIN_BREAK, 30),
        (ChainKind.FORK, 1010),
        (ChainKind.DUPLICATE_MESSAGE_ID, 1020),
    ]
    assert "identical bytes" in violations[2].reason
    assert "first seen at ncp.alerts.v1[2]@20" in violations[2].reason


def test_memory_stops_growing_with_the_records_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """40k records, 2,000 held at a time: past the first 8k the heap grows by a bounded
    amount (under 1 MB, where those 32k records in memory take 3.6 MB), and the chains
    still check clean."""
    monkeypatch.setattr(exchange.audit.spill, "KEY_BUFFER_BYTES", 64 * 1024)
    checker = ChainChecker(run_records=2000)
    blocks = [block("FR", T, list(range(s, s + 1000))) for s in range(1, 40_001, 1000)]
    # Warm up: the chain, the first spills and id flushes (their files; numpy imported).
    for b in blocks[:8]:
        checker.add_block(b)
    assert checker.spilled > 0
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for b in blocks[8:]:
            checker.add_block(b)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert checker.spilled >= 38_000
    assert grown < 1024 * 1024, grown
    assert checker.finish() == []


def test_the_scratch_file_is_removed_when_the_checker_closes(tmp_path: Path) -> None:
    """The records spilled under ``spill_dir`` are gone once the checker is closed."""
    checker = ChainChecker(spill_dir=tmp_path, run_records=2)
    checker.add_block(block("FR", T, [1, 2, 3]))
    assert checker.finish() == []
    assert any(tmp_path.iterdir())
    checker.close()
    assert list(tmp_path.iterdir()) == []


def test_a_duplicate_among_summaries_is_found_through_the_buffer() -> None:
    """Summaries (text ids) spilled with their chain; a reused id is still found."""
    checker = ChainChecker(run_records=7)
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
            h(f"r{s - 1}") if s > 1 else None,
            h(f"r{s}"),
        )
        for s in range(1, 101)
    ]
    summaries.append(summaries[41]._replace(offset=500, timestamp=1_700_000_000_500))
    checker.add_many(summaries)
    violations = checker.finish()
    assert [(v.kind, v.offset, v.message_id) for v in violations] == [
        (ChainKind.DUPLICATE_MESSAGE_ID, 500, "id-42")
    ]
    assert "identical bytes" in violations[0].reason


def test_spilled_and_in_memory_checks_find_the_same_violations() -> None:
    """Three senders on two topics with deletions, forks, re-sends and reused ids: the same
    violations, in the same order, whether 37 records or all of them are held at a time."""
    rng = Random(5)
    blocks: list[Block] = []
    for sender in ("FR", "DE", "NL"):
        for topic in (T, U):
            seqs = [s for s in range(1, 400) if rng.random() > 0.01]
            forks = {s: f"fork{s}" for s in rng.sample(seqs, 3)}
            reused = {s: mid(sender, T, s + 1) for s in rng.sample(seqs, 3)}
            rng.shuffle(seqs)
            for i in range(0, len(seqs), 50):
                blocks.append(block(sender, topic, seqs[i : i + 50], mids=reused))
            forked = sorted(forks)
            fb = block(sender, topic, forked, labels=forks)
            blocks.append(fb._replace(offsets=array("q", [5000 + s for s in forked]).tobytes()))
    rng.shuffle(blocks)
    small, whole = ChainChecker(run_records=37), ChainChecker()
    for b in blocks:
        small.add_block(b)
        whole.add_block(b)
    assert small.spilled > 0
    assert whole.spilled == 0
    expected = whole.finish()
    assert {v.kind for v in expected} >= {
        ChainKind.SEQUENCE_GAP,
        ChainKind.FORK,
        ChainKind.DUPLICATE_MESSAGE_ID,
    }
    assert small.finish() == expected


def test_one_id_sent_without_end_is_listed_only_up_to_the_limit() -> None:
    """One message id on 300 records: the first 50 duplicates by place are listed, the
    other 249 counted, and the places the checker holds for that id stay bounded."""
    same = mid("FR", T, 0)
    checker = ChainChecker(max_listed=50, run_records=64)
    seqs = list(range(1, 301))
    checker.add_block(block("FR", T, seqs, mids=dict.fromkeys(seqs, same)))
    listed = checker.finish()
    first_by_place = sorted((s % 3, s) for s in seqs[1:])[:50]  # block(): partition s % 3
    assert [(v.partition, v.offset) for v in listed] == first_by_place
    assert {v.kind for v in listed} == {ChainKind.DUPLICATE_MESSAGE_ID}
    assert checker.unlisted == {ChainKind.DUPLICATE_MESSAGE_ID: 299 - 50}


def test_many_repeated_ids_are_counted_past_the_limit() -> None:
    """200 ids each sent twice, 50 listed: the checker keeps at most 50 repeated ids and
    counts the duplicates of the others, so every one of the 200 is accounted for."""
    checker = ChainChecker(max_listed=50, run_records=64)
    seqs = list(range(1, 401))
    mids = {s: mid("FR", T, (s - 1) % 200) for s in seqs}
    checker.add_block(block("FR", T, seqs, mids=mids))
    listed = checker.finish()
    assert len(listed) == 50
    assert {v.kind for v in listed} == {ChainKind.DUPLICATE_MESSAGE_ID}
    assert all(v.offset > 200 for v in listed)  # the second of each pair
    assert checker.unlisted == {ChainKind.DUPLICATE_MESSAGE_ID: 150}


def test_id_buckets_return_at_most_the_limit_and_count_the_rest(tmp_path: Path) -> None:
    """IdBuckets.repeats(limit): at most ``limit`` repeated keys; the repeats of those left
    out are counted (a key added three times is two repeats)."""
    ids = exchange.audit.spill.IdBuckets(tmp_path)
    keys = [mid("FR", T, i) for i in range(10)]
    ids.add(0, b"".join(keys))
    ids.add(0, b"".join(keys))
    ids.add(0, keys[0] + keys[1])
    found, left_out = ids.repeats(4)
    assert len(found) == 4
    thrice = {exchange.audit.spill.IdBuckets.key(0, k) for k in keys[:2]}
    assert left_out == 12 - sum(2 if k in thrice else 1 for k in found)
    assert ids.repeats() == ({exchange.audit.spill.IdBuckets.key(0, k) for k in keys}, 0)
    ids.close()
