"""The replay's fast path: the common record shape verified without building objects.

Byte layout read (a SignedEnvelope value whose Envelope is wire v2, plain body, no
recipients, a handling record without restriction; everything else takes the full
path)::

    SignedEnvelope: C3 01 | fingerprint (8) | envelope length, 2-byte varint | envelope
                    | 80 01 (64) | signature (64) | key id length, 1 byte | key id
    Envelope:       C3 01 | fingerprint (8) | message_id (16) | message_type (1 byte)
                    | topic | key | sender (strings) | created_at long | sequence long
                    | previous_hash: 00, or 02 + 32 bytes
                    | 00 (no recipients) | handling: tlp, code, 00, source, info (5 bytes)
                    | 00 (PlainBody) | payload length long | payload, ending the envelope

The full path (:func:`exchange.audit.digest.check_many`: ``exchange.seal``'s parse, key
look-up, Envelope decode and checks) costs about 14 us a record besides the signature
check; this one about 4. It never refuses: a record it is not sure of goes to the full
path, which gives the verdict (and every refusal's reason and detail). It accepts only
what the full path accepts:

- The **static** bytes of a record (record topic, signer's owner, message type, topic,
  sender, the seven bytes from recipients to the body branch) decide the full path's
  checks of type, topic, sender against the key's owner and handling, and the facts the
  digest keeps (sender, type, TLP, recipients, version). A :class:`Shapes` learns them
  from a record the full path *accepted*; until then, a shape's records take the full path.
- The **dynamic** fields are checked here, each as strictly as the full path or more:
  the record key (equal bytes, valid UTF-8), created_at and the message id's UUIDv7 time
  against the append time (strict integer bounds: a record at a bound goes to the full
  path, whose float comparison decides), the key's validity at the append time (a key
  with a revocation always takes the full path), sequence and previous hash, the body's
  length ending the envelope exactly. Signatures: one ZIP-215 batch check
  (:func:`exchange.zip215.verify_batch`, as :func:`exchange.crypto.verify_many`); a
  failed signature goes to the full path, which refuses it.

``tests/audit/test_fastpath.py`` holds it to the full path on valid and hostile records.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any, NamedTuple

from exchange import codec, zip215
from exchange.audit.reader import RawRecord
from exchange.envelope import binary
from exchange.seal import DEFAULT_MAX_SKEW, MAX_ID_AGE, Verified
from exchange.trust import TrustHistory, TrustList

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_tuple_new = tuple.__new__  # a NamedTuple without its __new__'s Python call
_US = timedelta(microseconds=1)
SKEW_MS = DEFAULT_MAX_SKEW // timedelta(milliseconds=1)
MAX_ID_AGE_MS = MAX_ID_AGE // timedelta(milliseconds=1)
#: Times outside [0, 2**44) ms (year 2527) take the full path (datetime's range is its own).
TIME_LIMIT_MS = 1 << 44
_SIGNATURE_LENGTH = b"\x80\x01"
#: The bytes that are a whole Avro long, 0 to 63 (``bytes.translate`` deletes them).
_SMALL = bytes(range(0, 128, 2))
#: Where the record's facts go: kind (topic, sender, type, TLP, recipients, version) and
#: chain (sender, topic).
Facts = tuple[tuple[Any, ...], tuple[str, str]]
#: (record topic, key owner, message type byte, topic, sender, recipients..body branch)
ShapeKey = tuple[str, str, int, bytes, bytes, bytes]


class Key(NamedTuple):
    """A signing key as the fast path uses it: validity in microseconds since the epoch."""

    owner: str
    public_key: bytes
    valid_from_us: int
    valid_until_us: int | None


class Candidate(NamedTuple):
    """A record whose every check but the signature held in :func:`scan`."""

    record: RawRecord
    facts: Facts
    message_id: bytes
    sequence: int
    previous_hash: bytes | None
    #: ``(public_key, envelope, signature)`` for :func:`exchange.zip215.verify_batch`
    item: tuple[bytes, bytes, bytes]


class Accepted(NamedTuple):
    """A record the fast path verified, with what the digest keeps of it."""

    record: RawRecord
    facts: Facts
    message_id: bytes
    sequence: int
    previous_hash: bytes | None
    envelope_hash: bytes


#: The single-object headers (C3 01 + CRC-64-AVRO fingerprint) of the SignedEnvelope and
#: Envelope schemas whose layout this module reads (wire v2). A changed schema has another
#: fingerprint: then no record matches, and all take the full path until this module is
#: updated with it (tests/audit/test_fastpath.py notices: no record is accepted).
SIGNED_HEADER = bytes.fromhex("c301a1de34714732d7f9")
ENVELOPE_HEADER = bytes.fromhex("c30113030b944fd5a238")
_headers: tuple[bytes, bytes] | None = None


def _load_headers() -> tuple[bytes, bytes]:
    """The headers to match: this module's, each only while it is the current schema's."""
    global _headers
    signed = codec.REGISTRY.current("SignedEnvelope").header
    envelope = binary.header()
    _headers = (
        SIGNED_HEADER if signed == SIGNED_HEADER else b"-",
        ENVELOPE_HEADER if envelope == ENVELOPE_HEADER else b"-",
    )
    return _headers


def _us(t: datetime) -> int:
    return (t - _EPOCH) // _US


def _key(trust: TrustList, key_id: bytes) -> Key | None:
    """The key ``key_id`` names in ``trust``; None when unknown, not UTF-8 or revoked."""
    try:
        owner, entry = trust.signing_entry(key_id.decode())
    except Exception:  # unknown, not UTF-8, or a bug: the full path says which
        return None
    if entry.key_id in trust.revocations:  # its records take the full path
        return None
    until = None if entry.valid_until is None else _us(entry.valid_until)
    return Key(owner, entry.public_key, _us(entry.valid_from), until)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """An Avro long of at most 9 bytes (no 64-bit wrap to mirror); -1 position if longer."""
    b = data[pos]
    n = b & 0x7F
    shift = 7
    pos += 1
    while b & 0x80:
        if shift > 56:
            return 0, -1
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


class Shapes:
    """Per worker: the record shapes the full path accepted, and the keys looked up."""

    def __init__(self) -> None:
        self.shapes: dict[ShapeKey, Facts] = {}
        #: Records the fast path accepted (for tests and profiles).
        self.accepted = 0
        self._keys: dict[int, tuple[TrustList, dict[bytes, Key | None]]] = {}

    def keys_of(self, trust: TrustList) -> dict[bytes, Key | None]:
        """The key cache of ``trust`` (kept with the list, so its id stays its own)."""
        held = self._keys.get(id(trust))
        if held is None or held[0] is not trust:
            if len(self._keys) >= 64:  # lists come and go (tests): keep a few
                self._keys.clear()
            held = self._keys[id(trust)] = (trust, {})
        return held[1]

    def learn(self, shape: ShapeKey, verified: Verified, topic: str) -> None:
        """Remember what the full path found for a record of ``shape`` it accepted."""
        e = verified.envelope
        if len(self.shapes) < 4096:
            kind = (topic, e.sender, e.message_type, e.handling.tlp, e.recipients, e.version)
            self.shapes[shape] = (kind, (e.sender, topic))


#: The process's shapes: what a shape's full-path verdict was does not depend on the
#: trust list (its key's owner is part of the shape) nor on time.
SHAPES = Shapes()


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """An Avro long of at most 9 bytes at ``pos`` (no 64-bit wrap to mirror); position -1
    when longer. IndexError past the end."""
    b = data[pos]
    pos += 1
    if not b & 0x80:
        return (b >> 1) ^ -(b & 1), pos
    n = b & 0x7F
    shift = 7
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return (n >> 1) ^ -(n & 1), pos
        shift += 7
        if shift > 56:
            return 0, -1


def scan(
    record: RawRecord, trust: TrustList, keys: dict[bytes, Key | None], known: dict[ShapeKey, Facts]
) -> Candidate | ShapeKey | None:
    """One record: a :class:`Candidate` when everything but the signature holds beyond
    doubt, its shape when only the shape is unknown, else None (the full path decides).
    IndexError on bytes that end early."""
    topic, _partition, _offset, ts, record_key, value = record
    signed_header, envelope_header = _headers or _load_headers()
    if type(value) is not bytes or value[:10] != signed_header:
        return None
    # the SignedEnvelope: as exchange.codec.decode_signed reads its usual shape
    h0 = value[10]
    h1 = value[11]
    if h0 & 0x81 != 0x80 or h1 & 0x80:
        return None
    stop = 12 + (((h1 << 7) | (h0 & 0x7F)) >> 1)
    at = stop + 66
    n = value[at]
    if value[stop : stop + 2] != _SIGNATURE_LENGTH or n & 0x81 or at + 1 + (n >> 1) != len(value):
        return None
    key_id = value[at + 1 :]
    key = keys.get(key_id)
    if key is None:
        if key_id in keys:  # known to take the full path
            return None
        key = keys[key_id] = _key(trust, key_id)
        if key is None:
            return None
    data = value[12:stop]
    if data[:10] != envelope_header or data[26] & 0x81:
        return None
    # topic, key, sender: strings of one-byte lengths (0-63 bytes)
    n = data[27]
    if n & 0x81:
        return None
    pos = 28 + (n >> 1)
    topic_bytes = data[28:pos]
    n = data[pos]
    if n & 0x81:
        return None
    start = pos + 1
    pos = start + (n >> 1)
    key_bytes = data[start:pos]
    n = data[pos]
    if n & 0x81:
        return None
    start = pos + 1
    pos = start + (n >> 1)
    sender_bytes = data[start:pos]
    # created_at: 2^34 to 2^41 ms (1970-07 to 2039-09) is six bytes, read in one go
    x = int.from_bytes(data[pos : pos + 6], "little")
    if x & 0x808080808080 == 0x008080808080:
        x = (
            (x & 0x7F)
            | (x >> 1 & 0x3F80)
            | (x >> 2 & 0x1FC000)
            | (x >> 3 & 0xFE00000)
            | (x >> 4 & 0x7F0000000)
            | (x >> 5 & 0x3F800000000)
        )
        created = (x >> 1) ^ -(x & 1)
        pos += 6
    else:
        created, pos = _long(data, pos)
        if pos < 0:
            return None
    # sequence: up to three bytes inline (up to 1,048,575), longer through _long
    b = data[pos]
    if not b & 0x80:
        pos += 1
    elif not data[pos + 1] & 0x80:
        b = (b & 0x7F) | data[pos + 1] << 7
        pos += 2
    elif not data[pos + 2] & 0x80:
        b = (b & 0x7F) | (data[pos + 1] & 0x7F) << 7 | data[pos + 2] << 14
        pos += 3
    else:
        b, pos = _long(data, pos)
        if pos < 0:
            return None
        b = (b << 1) ^ (b >> 63)  # back to its zig-zag form, decoded below
    sequence = (b >> 1) ^ -(b & 1)
    previous: bytes | None = None
    branch = data[pos]
    if branch == 2:
        previous = data[pos + 1 : pos + 33]
        pos += 33
        if sequence < 2 or len(previous) != 32:
            return None
    elif branch or sequence != 1:
        return None
    else:
        pos += 1
    # recipients, handling, body branch: seven one-byte longs, so that the full path
    # reads exactly these bytes as these fields too
    tail = data[pos : pos + 7]
    if len(tail) != 7 or tail[0] or tail[3] or tail[6] or tail.translate(None, _SMALL):
        return None
    # the payload's length: two bytes inline (64 B to 8 KB), else through _long
    pos += 7
    b = data[pos]
    if b & 0x81 == 0x80 and not data[pos + 1] & 0x80:
        body = ((b & 0x7F) | data[pos + 1] << 7) >> 1
        pos += 2
    else:
        body, pos = _long(data, pos)
    if pos < 0 or body < 0 or pos + body != len(data):
        return None
    shape = (topic, key.owner, data[26], topic_bytes, sender_bytes, tail)
    facts = known.get(shape)
    if facts is None:
        return shape
    # the record's own fields
    if key_bytes != record_key or not (0 <= ts < TIME_LIMIT_MS):
        return None
    try:
        key_bytes.decode()
    except UnicodeDecodeError:
        return None
    if not ts - SKEW_MS < created < ts + SKEW_MS:
        return None
    mid = data[10:26]
    id_value = int.from_bytes(mid)
    if (id_value >> 76) & 0xF != 7 or not (
        created - MAX_ID_AGE_MS < id_value >> 80 < created + SKEW_MS
    ):
        return None
    at_us = ts * 1000
    if at_us < key.valid_from_us or (
        key.valid_until_us is not None and at_us >= key.valid_until_us
    ):
        return None
    item = (key.public_key, data, value[stop + 2 : at])
    return _tuple_new(Candidate, (record, facts, mid, sequence, previous, item))


def split(
    records: Sequence[RawRecord], judge: TrustList | TrustHistory, shapes: Shapes
) -> tuple[list[Candidate], list[RawRecord], list[ShapeKey | None]]:
    """Split ``records``: (candidates, the rest for the full path, the rest's shapes).

    A candidate still needs its signature checked (``item`` for
    :func:`exchange.zip215.verify_batch`); a failed one goes to the full path. A rest
    record's shape is None unless the fast path could read it and only its shape was
    unknown: the caller lets :meth:`Shapes.learn` take the full path's verdict."""
    known = shapes.shapes
    found: list[Candidate] = []
    rest: list[RawRecord] = []
    rest_shapes: list[ShapeKey | None] = []
    history = judge if isinstance(judge, TrustHistory) else None
    trust = judge if isinstance(judge, TrustList) else judge.latest
    keys = shapes.keys_of(trust)
    for record in records:
        if history is not None:
            trust = history.at(record[3])
            keys = shapes.keys_of(trust)
        try:
            got = scan(record, trust, keys, known)
        except Exception:  # bytes that end early (IndexError), or a bug: the full path decides
            got = None
        if isinstance(got, Candidate):
            found.append(got)
        else:
            rest.append(record)
            rest_shapes.append(got)
    return found, rest, rest_shapes


def fast_check(
    records: Sequence[RawRecord], judge: TrustList | TrustHistory, shapes: Shapes
) -> tuple[list[Accepted], list[RawRecord], list[ShapeKey | None]]:
    """:func:`split`, then the candidates' signatures in one batch check: (accepted
    here, the rest for the full path, the rest's shapes)."""
    found, rest, rest_shapes = split(records, judge, shapes)
    out: list[Accepted] = []
    if found:
        verdicts = zip215.verify_batch([c.item for c in found])
        for c, ok in zip(found, verdicts, strict=True):
            if ok:
                out.append(_tuple_new(Accepted, (*c[:5], sha256(c.item[1]).digest())))
            else:
                rest.append(c.record)
                rest_shapes.append(None)
        shapes.accepted += len(out)
    return out, rest, rest_shapes
