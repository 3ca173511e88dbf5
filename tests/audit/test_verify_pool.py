"""Verification of raw records into summaries, inline, on threads and on processes."""

from __future__ import annotations

import operator
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.audit.checks import ChainChecker, RecordSummary
from exchange.audit.digest import check, check_many, digest_batch
from exchange.audit.reader import RawRecord
from exchange.audit.verify_pool import Mode, RelayedError, VerifyPool, summarize
from exchange.errors import Reason, TransientError, TrustListError
from exchange.ids import KeyId, Topic
from exchange.trust import KeyEntry, TrustList
from tests.audit.history import audit_federation, forge
from tests.helpers.federation import Federation

TOPIC = Topic("ncp.alerts.v1")


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return audit_federation(tmp_path)


def _ms(t: datetime) -> int:
    """``t`` as a Kafka timestamp: the append time the replay judges a record at."""
    return int(t.timestamp() * 1000)


def _records(fed: Federation, now: datetime, n: int = 5) -> list[RawRecord]:
    fr = fed.sender("FR")
    out: list[RawRecord] = []
    for i in range(n):
        s = fr.alert(now, topic=TOPIC)
        out.append((TOPIC, 0, i, _ms(now) + i, s.key, s.value))
    return out


def test_verified_record_is_summarized_with_its_chain_fields(fed: Federation) -> None:
    """A valid record's summary carries sender, type, id, sequence, hashes and key id."""
    now = datetime.now(UTC)
    sealed = fed.sender("FR").alert(now, topic=TOPIC)
    s = summarize((TOPIC, 2, 7, _ms(now), sealed.key, sealed.value), fed.trust, now)
    env = sealed.envelope
    assert s.verified
    assert (s.topic, s.partition, s.offset, s.timestamp) == (TOPIC, 2, 7, _ms(now))
    assert (s.sender, s.message_type, s.message_id) == ("FR", "OffenceAlert", str(env.message_id))
    assert (s.sequence, s.previous_hash, s.envelope_hash) == (1, None, sealed.envelope_hash)
    assert s.key_id == fed.sender("FR").key.key_id
    assert (s.tlp, s.recipients) == ("GREEN", ())


def test_refused_record_names_what_it_claims(fed: Federation) -> None:
    """A forged record: its Reason code and detail, plus the sender and id it claims."""
    now = datetime.now(UTC)
    sealed = fed.sender("FR").alert(now, topic=TOPIC)
    s = summarize((TOPIC, 0, 0, 0, sealed.key, forge(sealed.value)), fed.trust, now)
    assert s.error_reason == "bad_signature"
    assert s.error_detail is not None
    assert "does not verify" in s.error_detail
    assert (s.sender, s.message_id) == ("FR", str(sealed.envelope.message_id))
    assert s.envelope_hash is None


def test_tombstone_is_malformed(fed: Federation) -> None:
    """A record without a value (a tombstone) is malformed, named as such."""
    s = summarize((TOPIC, 0, 0, 0, b"k", None), fed.trust, datetime.now(UTC))
    assert (s.error_reason, s.error_detail) == ("malformed", "record has no value (a tombstone)")


class _BrokenTrust(TrustList):
    """A trust list whose look-up fails as a bug would (not with an ExchangeError)."""

    __slots__ = ()

    def signing_entry(self, key_id: str) -> tuple[str, KeyEntry]:  # type: ignore[override]
        raise RuntimeError(f"boom for {KeyId(key_id)}")


def test_unexpected_error_is_reported_not_raised(fed: Federation) -> None:
    """An unexpected exception while verifying one record becomes a finding, not a crash."""
    t = fed.trust
    broken = _BrokenTrust(
        federation=t.federation,
        version=t.version,
        issued_at=t.issued_at,
        root_public_key=t.root_public_key,
        members=t.members.values(),
    )
    now = datetime.now(UTC)
    sealed = fed.sender("FR").alert(now, topic=TOPIC)
    s = summarize((TOPIC, 0, 0, 0, sealed.key, sealed.value), broken, now)
    assert s.error_reason == "malformed"
    assert s.error_detail == "verification failed unexpectedly: RuntimeError: boom for " + (
        fed.sender("FR").key.key_id
    )


@pytest.mark.parametrize(("mode", "workers"), [("process", 2), ("thread", 2), ("process", 0)])
def test_pools_return_the_same_as_inline(fed: Federation, mode: Mode, workers: int) -> None:
    """Processes, threads and inline verification give identical summaries and counts."""
    now = datetime.now(UTC)
    batch = _records(fed, now)
    trust_bytes = fed.trust_path.read_bytes()
    root = fed.root.public_bytes
    expected = [summarize(r, fed.trust, now) for r in batch]
    with VerifyPool(trust_bytes, root, now=now, workers=workers, mode=mode) as pool:
        rows, tally = pool.submit(batch).result(timeout=60)
    assert [RecordSummary._make(r) for r in rows] == expected
    assert tally.records == len(batch)
    assert tally.by_sender == {"FR": len(batch)}


def test_pool_refuses_a_trust_list_that_does_not_verify(fed: Federation) -> None:
    """The pool verifies the trust list before starting any worker."""
    with pytest.raises(TrustListError):
        VerifyPool(fed.trust_path.read_bytes(), bytes(32), now=datetime.now(UTC), workers=1)


def test_digest_keeps_what_the_checks_and_counts_need(fed: Federation) -> None:
    """A digest (failures as summaries, the rest as column blocks) checks and counts alike."""
    now = datetime.now(UTC)
    batch = _records(fed, now, 4)
    first = batch[0]
    batch.append((TOPIC, 1, 0, _ms(now) + 10, first[4], first[5]))  # a re-send of sequence 1
    batch.append((TOPIC, 1, 1, _ms(now) + 11, first[4], forge(first[5] or b"")))
    batch.append((TOPIC, 1, 2, _ms(now) + 12, b"k", None))
    summaries = [summarize(r, fed.trust, now) for r in batch]
    failed, blocks, tally = digest_batch(batch, fed.trust, now)
    # in place order: the fast path (which may have learnt this shape from an earlier test)
    # hands the failures it leaves to the full path after the rest
    place = operator.attrgetter("topic", "partition", "offset")
    assert sorted((RecordSummary._make(r) for r in failed), key=place) == sorted(
        (s for s in summaries if not s.verified), key=place
    )
    by_summaries, by_digest = ChainChecker(), ChainChecker()
    by_summaries.add_many(summaries)
    by_digest.add_many(RecordSummary._make(r) for r in failed)
    for block in blocks:
        by_digest.add_block(block)
    found = by_digest.finish()
    assert found == by_summaries.finish()
    assert [v.kind for v in found] == ["duplicate_message_id", "bad_signature", "malformed"]
    assert (tally.records, tally.verified, tally.by_sender) == (7, 5, {"FR": 5})


@pytest.mark.parametrize(("mode", "workers"), [("process", 2), ("thread", 2), ("process", 0)])
def test_pools_digest_as_inline(fed: Federation, mode: Mode, workers: int) -> None:
    """Processes, threads and inline verification give identical digests."""
    now = datetime.now(UTC)
    batch = _records(fed, now)
    expected = digest_batch(batch, fed.trust, now)
    trust_bytes, root = fed.trust_path.read_bytes(), fed.root.public_bytes
    with VerifyPool(trust_bytes, root, now=now, workers=workers, mode=mode) as pool:
        failed, blocks, tally = pool.submit_digest(batch).result(timeout=60)
    assert (failed, blocks) == expected[:2]
    assert tally.as_dict() == expected[2].as_dict()


def test_worker_errors_come_back_as_raised() -> None:
    """An ExchangeError raised in a worker survives pickling with its class, reason and detail."""
    relayed = RelayedError(TransientError, Reason.UNAVAILABLE, "reading records: no answer", None)
    err = pickle.loads(pickle.dumps(relayed)).error()  # noqa: S301 (our own bytes)
    assert type(err) is TransientError
    assert (err.reason, err.detail, err.field) == (Reason.UNAVAILABLE, relayed.args[2], None)
    assert str(err) == str(TransientError("reading records: no answer"))


def test_batch_check_gives_each_record_its_single_check_verdict(fed: Federation) -> None:
    """check_many (one batch signature check) refuses exactly what check refuses, alike."""
    now = datetime.now(UTC)
    records = _records(fed, now, 300)
    topic, partition, offset, ts, key, value = records[10]
    records[10] = (topic, partition, offset, ts, key, forge(value or b""))
    records[20] = (topic, partition, 20, ts, key, None)
    records[30] = (topic, partition, 30, ts, key, b"\x00not a signed envelope")
    records[40] = (topic, partition, 40, ts, b"another-key", records[40][5])
    batched = check_many(records, fed.trust, now)
    assert batched == [check(r, fed.trust, now) for r in records]
    refused = {
        i: (v.error_reason, v.offset) for i, v in enumerate(batched) if isinstance(v, RecordSummary)
    }
    assert refused == {
        10: ("bad_signature", 10),
        20: ("malformed", 20),
        30: ("malformed", 30),
        40: ("wrong_key", 40),
    }
