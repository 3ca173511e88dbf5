"""The replay's fast path gives the full path's verdicts: it accepts only what the full
path accepts, with the same facts, and leaves everything else to it."""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from exchange import codec
from exchange.audit.digest import Digest, DigestBuilder, Judge, check
from exchange.audit.fastpath import SKEW_MS, Shapes, fast_check
from exchange.audit.reader import RawRecord
from exchange.chain import Link
from exchange.envelope import encode_envelope
from exchange.fetchguard import UndecodableBatch
from exchange.ids import KeyId, NodeId, Topic
from exchange.keys import SigningKey
from exchange.models import Handling, HandlingCode, InformationReliability, SourceReliability, Tlp
from exchange.seal import Sealed, Verified
from exchange.trust import KeyEntry, TrustHistory, TrustList
from tests.audit.history import T0, audit_federation
from tests.helpers.federation import Federation

TOPIC = Topic("ncp.alerts.v1")


class Unlearning(Shapes):
    """Shapes that learn nothing: every record takes the full path."""

    def learn(self, *args: Any) -> None:
        pass


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _record(sealed: Sealed, value: bytes | None = None, ts: int | None = None) -> RawRecord:
    ts = _ms(sealed.envelope.created_at) if ts is None else ts
    return (TOPIC, 0, 0, ts, sealed.key, sealed.value if value is None else value)


def _signed(envelope_bytes: bytes, signer: SigningKey) -> bytes:
    return codec.encode_signed(envelope_bytes, signer.sign(envelope_bytes), signer.key_id)


def _taught(fed: Federation, trust: TrustList, now: datetime) -> Shapes:
    """Shapes that learned FR's alerts on TOPIC from one record the full path accepted."""
    shapes = Shapes()
    builder = DigestBuilder(trust, now, shapes)
    builder.add_many([_record(fed.sender("FR").alert(now, topic=TOPIC))])
    assert len(shapes.shapes) == 1
    return shapes


def _facts(v: Verified, record: RawRecord) -> tuple[Any, ...]:
    e = v.envelope
    kind = (record[0], e.sender, e.message_type, e.handling.tlp, e.recipients, e.version)
    return (kind, (e.sender, record[0]), e.message_id.bytes, e.sequence, e.previous_hash)


def _agrees(records: Sequence[RawRecord], trust: Judge, now: datetime, shapes: Shapes) -> int:
    """Assert: every record the fast path accepts, the full path accepts with the same
    facts and envelope hash; the rest are handed back, none lost. How many it accepted."""
    accepted, rest, _ = fast_check(records, trust, shapes)
    assert len(accepted) + len(rest) == len(records)
    for a in accepted:
        v = check(a.record, trust, now)
        assert type(v) is Verified, (a.record, v)
        assert (*a.facts, a.message_id, a.sequence, a.previous_hash) == _facts(v, a.record)
        assert a.envelope_hash == v.envelope_hash
    return len(accepted)


def _rows(digest: Digest) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """A digest in an order-free form: failed rows, verified rows, counts."""
    failed, blocks, tally = digest
    rows = []
    for b in blocks:
        columns = [array("q", c) for c in (b.sequences, b.timestamps, b.partitions, b.offsets)]
        for i, (seq, ts, partition, offset) in enumerate(zip(*columns, strict=True)):
            previous = None if i in b.no_previous else b.previous_hashes[32 * i : 32 * i + 32]
            mid = b.message_ids[16 * i : 16 * i + 16]
            ours = b.envelope_hashes[32 * i : 32 * i + 32]
            rows.append((b.sender, b.topic, partition, offset, seq, ts, mid, previous, ours))
    return sorted(map(repr, failed)), sorted(rows), tally.as_dict()


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return audit_federation(tmp_path, ("FR", "DE"))


def test_an_unknown_shape_takes_the_full_path_until_it_accepted_one(fed: Federation) -> None:
    """No shape is taken on trust: a fresh process sends the first records to the full
    path, and a record the full path refused teaches nothing."""
    now = datetime.now(UTC)
    shapes = Shapes()
    fr = fed.sender("FR")
    moved = fr.alert(now, topic=TOPIC)
    wrong_key = (TOPIC, 0, 0, _ms(now), b"another key", moved.value)
    builder = DigestBuilder(fed.trust, now, shapes)
    builder.add_many([wrong_key])
    assert shapes.shapes == {}
    accepted, rest, rest_shapes = fast_check(
        [_record(fr.alert(now, topic=TOPIC))], fed.trust, shapes
    )
    assert accepted == []
    assert len(rest) == 1
    assert rest_shapes[0] is not None


def test_valid_records_are_taken_fast_with_the_full_paths_facts(fed: Federation) -> None:
    """After one accepted record, a chain of FR's alerts is accepted by the fast path alone."""
    now = datetime.now(UTC)
    shapes = _taught(fed, fed.trust, now)
    records = [_record(fed.sender("FR").alert(now, topic=TOPIC)) for _ in range(20)]
    assert _agrees(records, fed.trust, now, shapes) == 20


def test_what_the_full_path_cannot_read_goes_to_it_untouched(fed: Federation) -> None:
    """Tombstones, unreadable batches, garbage and truncated values are handed back."""
    now = datetime.now(UTC)
    shapes = _taught(fed, fed.trust, now)
    good = fed.sender("FR").alert(now, topic=TOPIC)
    batch = UndecodableBatch.of(good.value, 0, 3, "crc mismatch")  # a valid record's bytes
    odd: list[bytes | UndecodableBatch | None] = [None, batch, b"", b"\xc3\x01", b"\x00" * 40]
    odd += [good.value[:n] for n in range(0, len(good.value), 37)]
    records: list[Any] = [(TOPIC, 0, i, _ms(now), good.key, v) for i, v in enumerate(odd)]
    accepted, rest, _ = fast_check(records, fed.trust, shapes)
    assert accepted == []
    assert rest == records


def test_every_byte_of_a_signed_envelope_changed_gets_the_full_paths_verdict(
    fed: Federation,
) -> None:
    """A member signs any bytes: each envelope byte set to five other values, re-signed;
    whatever the fast path accepts, the full path accepts with the same facts."""
    now = datetime.now(UTC)
    shapes = _taught(fed, fed.trust, now)
    fr = fed.sender("FR")
    fr.alert(now, topic=TOPIC)
    sealed = fr.alert(now, topic=TOPIC)  # sequence 3, with a previous hash
    data = encode_envelope(sealed.envelope)
    records = []
    for i in range(len(data)):
        for b in {data[i] ^ 1, data[i] ^ 0x80, 0, 0x7F, 0xFF} - {data[i]}:
            changed = data[:i] + bytes([b]) + data[i + 1 :]
            records.append(_record(sealed, _signed(changed, fr.key)))
    for cut in (1, 2, 33, 100):
        records.append(_record(sealed, _signed(data[:-cut], fr.key)))
    records.append(_record(sealed, _signed(data + b"\x00", fr.key)))
    accepted = _agrees(records, fed.trust, now, shapes)
    assert 0 < accepted < len(records)  # changed payload bytes are still a valid record


def test_valid_but_non_canonical_avro_gets_the_full_paths_verdict(fed: Federation) -> None:
    """Avro accepts a long written in more bytes than needed: a sequence, a handling field
    or the body branch so written is read as the full path reads it, or left to it, and a
    shape learned from such a record is never applied to bytes that differ after it."""
    now = datetime.now(UTC)
    fr = fed.sender("FR")
    sealed = fr.alert(now, topic=TOPIC)
    data = encode_envelope(sealed.envelope)
    body = sealed.envelope.body
    assert isinstance(body, bytes)
    branch = len(data) - len(body) - len(codec.encode_long(len(body))) - 1
    handling, recipients = branch - 5, branch - 6
    assert data[recipients] == 0
    assert data[branch] == 0

    def widened(at: int) -> bytes:  # the one-byte long at ``at`` in two bytes
        return data[:at] + bytes([data[at] | 0x80, 0]) + data[at + 1 :]

    # sequence 1: its one byte, then the previous hash's null branch, then the recipients
    variants = [widened(at) for at in (recipients - 2, recipients - 1, recipients, branch)]
    variants += [widened(at) for at in range(handling, branch)]
    shapes = _taught(fed, fed.trust, now)
    records = [_record(sealed, _signed(v, fr.key)) for v in variants]
    for r in records:  # each accepted by the full path first: they may teach their shape
        DigestBuilder(fed.trust, now, shapes).add_many([r])
    assert [type(check(r, fed.trust, now)) for r in records] == [Verified] * len(records)
    _agrees(records, fed.trust, now, shapes)
    for v in variants[1:]:  # and what follows such a field differs: left to the full path
        changed = _record(sealed, _signed(v[:-1] + bytes([v[-1] ^ 1]) + b"\x00", fr.key))
        assert fast_check([changed], fed.trust, shapes)[0] == []


def _handling(tlp: Tlp, code: HandlingCode, restriction: str | None = None) -> Handling:
    """A handling record as a lying member writes it (not validated)."""
    return Handling.model_construct(
        tlp=tlp,
        code=code,
        restriction=restriction,
        source_reliability=SourceReliability.A,
        information_reliability=InformationReliability.ONE,
    )


def test_lying_fields_signed_by_a_member_get_the_full_paths_verdict(fed: Federation) -> None:
    """Times at and around every bound, ids, links, senders, topics, handling and keys:
    the fast path accepts a record only when the full path does, with the same facts."""
    now = datetime.now(UTC)
    shapes = _taught(fed, fed.trust, now)
    fr = fed.sender("FR")
    sealed = fr.alert(now, topic=TOPIC)
    env = sealed.envelope
    ms = _ms(env.created_at)
    records: list[RawRecord] = []

    def put(ts: int = ms, record_key: bytes | None = sealed.key, **changes: Any) -> None:
        data = encode_envelope(env._replace(**changes))
        records.append((TOPIC, 0, len(records), ts, record_key, _signed(data, fr.key)))

    for delta in (-SKEW_MS - 1, -SKEW_MS, -SKEW_MS + 1, 0, SKEW_MS - 1, SKEW_MS, SKEW_MS + 1):
        put(ts=ms + delta)
    mid = env.message_id.int
    for id_delta_ms in (-(7 * 86_400_000) - 1, -(7 * 86_400_000), 0, SKEW_MS, SKEW_MS + 1):
        moved = mid + (id_delta_ms << 80)
        put(message_id=UUID(int=moved % (1 << 128)))
    put(message_id=UUID(int=mid ^ (0xF << 76)))  # not a UUIDv7
    for sequence in (63, 64, 8191, 8192, 1_048_575, 1_048_576, 2**40, 2**62):
        put(
            sequence=sequence, previous_hash=bytes(32)
        )  # 1 to 10 bytes: 10 is left to the full path
    put(sequence=1, previous_hash=None)
    put(sequence=1, previous_hash=bytes(32))
    put(sequence=env.sequence, previous_hash=None)
    put(sequence=0, previous_hash=None)
    put(sender=NodeId("DE"))
    put(sender=NodeId("XX"))
    put(topic=Topic("ncp.indicators.v1"))
    put(key="another-key")
    put(handling=_handling(Tlp.RED, HandlingCode.H0))
    put(handling=_handling(Tlp.AMBER, HandlingCode.H3))
    put(handling=_handling(Tlp.AMBER, HandlingCode.H3, "only for case X"))
    put(handling=_handling(Tlp.AMBER, HandlingCode.H1, "a text where none belongs"))
    put(handling=_handling(Tlp.CLEAR, HandlingCode.H0))
    put(recipients=(NodeId("DE"),))
    put(record_key=None)
    put(record_key=b"another-key")
    put(ts=-1)
    accepted = _agrees(records, fed.trust, now, shapes)
    assert accepted >= 12  # the records inside every bound, the sequences of up to 9 bytes


def test_keys_are_judged_at_the_append_time_and_revoked_keys_by_the_full_path(
    tmp_path: Path,
) -> None:
    """A key before, at and after its validity window, and a key revoked later: the fast
    path accepts only inside the window and leaves a revoked key's records to the full path."""
    now = datetime.now(UTC)
    spare, expiring = SigningKey.generate(), SigningKey.generate()
    revoked_at = now - timedelta(hours=1)
    fed = audit_federation(
        tmp_path,
        ("FR", "DE"),
        extra_keys={"FR": spare},
        expired_keys={"FR": expiring},
        revoked={KeyId(spare.key_id): revoked_at},
    )
    shapes = _taught(fed, fed.trust, now)
    fr = fed.sender("FR")
    records: list[RawRecord] = []
    _, entry = fed.trust.signing_entry(expiring.key_id)
    assert entry.valid_until is not None
    for signer, at in [
        (expiring, entry.valid_from - timedelta(milliseconds=1)),
        (expiring, entry.valid_from),
        (expiring, entry.valid_until - timedelta(milliseconds=1)),
        (expiring, entry.valid_until),
        (spare, revoked_at - timedelta(minutes=1)),
        (spare, revoked_at + timedelta(minutes=1)),
    ]:
        sealed = fr.alert(at, topic=TOPIC, signer=signer, advance=False)
        records.append(_record(sealed, ts=_ms(at)))
    accepted, _, _ = fast_check(records, fed.trust, shapes)
    _agrees(records, fed.trust, now, shapes)
    assert [a.record for a in accepted] == records[1:3]
    verdicts = [type(check(r, fed.trust, now)) for r in records]
    assert verdicts.count(Verified) == 3  # the two inside the window, the spare before revocation


def test_each_record_is_judged_by_the_list_in_force_at_its_append_time(
    fed: Federation,
) -> None:
    """A key listed from version 2 on: its record appended before version 2 was published
    is left to the full path (which refuses it), the one appended after is accepted."""
    now = datetime.now(UTC)
    t = fed.trust
    spare = SigningKey.generate()
    members = [
        dataclasses.replace(
            m, signing_keys=(*m.signing_keys, KeyEntry.for_key(spare.public_bytes, T0))
        )
        if m.node_id == "FR"
        else m
        for m in t.members.values()
    ]
    v2 = TrustList(
        federation=t.federation,
        version=t.version + 1,
        issued_at=t.issued_at,
        root_public_key=t.root_public_key,
        members=members,
    )
    published = now - timedelta(hours=1)
    history = TrustHistory([(0, t), (_ms(published), v2)])
    shapes = _taught(fed, t, now)
    fr = fed.sender("FR")
    before = fr.alert(published - timedelta(minutes=1), topic=TOPIC, signer=spare, advance=False)
    after = fr.alert(now, topic=TOPIC, signer=spare, advance=False)
    records = [_record(before), _record(after)]
    accepted, _, _ = fast_check(records, history, shapes)
    assert [a.record for a in accepted] == records[1:]
    assert _agrees(records, history, now, shapes) == 1
    assert type(check(records[0], history, now)) is not Verified


class _BrokenTrust(TrustList):
    """A trust list whose look-up fails as a bug would (not with an ExchangeError)."""

    __slots__ = ()

    def signing_entry(self, key_id: str) -> tuple[NodeId, KeyEntry]:
        raise RuntimeError(f"boom for {KeyId(key_id)}")


def test_an_unexpected_error_leaves_the_record_to_the_full_path(fed: Federation) -> None:
    """A bug in a look-up does not stop the fast path: the record goes to the full path,
    which reports it."""
    now = datetime.now(UTC)
    t = fed.trust
    broken = _BrokenTrust(
        federation=t.federation,
        version=t.version,
        issued_at=t.issued_at,
        root_public_key=t.root_public_key,
        members=t.members.values(),
    )
    shapes = _taught(fed, t, now)
    record = _record(fed.sender("FR").alert(now, topic=TOPIC))
    accepted, rest, _ = fast_check([record], broken, shapes)
    assert accepted == []
    assert rest == [record]
    builder = DigestBuilder(broken, now, shapes)
    builder.add_many([record])
    failed, _, _ = builder.digest()
    assert len(failed) == 1


def test_a_mixed_batch_digests_as_the_full_path_digests_it(fed: Federation) -> None:
    """Valid, forged, duplicated, re-linked and refused records, fast path on or off:
    the same failed rows, chain columns and counts."""
    now = datetime.now(UTC)
    fr, de = fed.sender("FR"), fed.sender("DE")
    records: list[RawRecord] = []
    for i in range(30):
        s = (fr if i % 3 else de).alert(now, topic=TOPIC)
        records.append((TOPIC, i % 3, i, _ms(now), s.key, s.value))
    forged = bytearray(records[5][5] or b"")
    forged[-40] ^= 1  # a signature byte
    records[5] = (*records[5][:5], bytes(forged))
    records.append(records[7])  # a re-send
    fork = fr.alert(now, topic=TOPIC, link=Link(4, bytes(32)), advance=False)
    records.append((TOPIC, 1, 99, _ms(now), fork.key, fork.value))
    records.append((TOPIC, 1, 100, _ms(now), b"k", b"garbage"))
    shapes = Shapes()
    fast = DigestBuilder(fed.trust, now, shapes)
    full = DigestBuilder(fed.trust, now, Unlearning())
    for builder in (fast, full):
        builder.add_many(records[:3])  # the first teach the shapes
        builder.add_many(records[3:])
    assert shapes.accepted >= 20
    assert _rows(fast.digest()) == _rows(full.digest())
