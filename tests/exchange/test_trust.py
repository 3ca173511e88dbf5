"""The signed trust list: build, sign, load, verify, look up (exchange.trust)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchange import codec, crypto
from exchange.errors import Reason, TrustListError, VerificationError
from exchange.ids import KeyId, NodeId
from exchange.keys import EncryptionKey, SigningKey, key_id_for
from exchange.trust import KeyEntry, Member, TrustList, load_trust_list

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(days=30)


def _member(node: str, sk: SigningKey, valid_until: datetime | None = None) -> Member:
    return Member(
        NodeId(node),
        f"NCP {node}",
        (KeyEntry.for_key(sk.public_bytes, T0, valid_until),),
        (KeyEntry.for_key(EncryptionKey.generate().public_bytes, T0),),
    )


@pytest.fixture
def root() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def fr() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def trust(root: SigningKey, fr: SigningKey) -> TrustList:
    return TrustList(
        federation="test",
        version=1,
        issued_at=T0,
        root_public_key=root.public_bytes,
        members=[_member("FR", fr, T0 + timedelta(days=365)), _member("DE", SigningKey.generate())],
    )


def test_signed_trust_list_round_trips(trust: TrustList, root: SigningKey) -> None:
    """A signed trust list loads back equal, member for member."""
    loaded = TrustList.from_signed(trust.sign(root), root.public_bytes)
    assert loaded.to_avro() == trust.to_avro()
    assert loaded.root_key_id == root.key_id
    assert set(loaded.members) == {"FR", "DE"}


def test_load_reads_root_pub_beside_the_file(
    tmp_path: Path, trust: TrustList, root: SigningKey
) -> None:
    """Without an explicit root key, root.pub beside the trust file is used."""
    (tmp_path / "trust.list").write_bytes(trust.sign(root))
    root.save(tmp_path / "root.key", tmp_path / "root.pub")
    assert load_trust_list(tmp_path / "trust.list").version == 1
    assert load_trust_list(tmp_path / "trust.list", tmp_path / "root.pub").version == 1
    assert load_trust_list(tmp_path / "trust.list", root.public_bytes).version == 1


def test_another_root_key_is_refused(trust: TrustList, root: SigningKey) -> None:
    """A trust list checked against another root key is BAD_TRUST_LIST."""
    with pytest.raises(TrustListError) as info:
        TrustList.from_signed(trust.sign(root), SigningKey.generate().public_bytes)
    assert info.value.reason is Reason.BAD_TRUST_LIST


def test_list_signed_by_a_rogue_root_naming_itself_is_refused(
    trust: TrustList, root: SigningKey
) -> None:
    """A rogue key that signs a copy naming itself as root fails against the real root."""
    rogue = SigningKey.generate()
    copy = TrustList(
        federation="test",
        version=2,
        issued_at=T0,
        root_public_key=rogue.public_bytes,
        members=list(trust.members.values()),
    )
    with pytest.raises(TrustListError, match="bad_trust_list"):
        TrustList.from_signed(copy.sign(rogue), root.public_bytes)


def test_signature_by_real_root_over_list_naming_another_root_is_refused(
    trust: TrustList, root: SigningKey
) -> None:
    """The root key named inside must be the trusted root key."""
    other = TrustList(
        federation="test",
        version=1,
        issued_at=T0,
        root_public_key=SigningKey.generate().public_bytes,
        members=list(trust.members.values()),
    )
    body = other.encode()
    data = codec.encode_signed(body, root.sign(body), root.key_id)
    with pytest.raises(TrustListError, match="root key named inside"):
        TrustList.from_signed(data, root.public_bytes)


def test_every_flipped_byte_of_the_file_is_refused(trust: TrustList, root: SigningKey) -> None:
    """Flipping any byte of a trust-list file makes loading fail with BAD_TRUST_LIST."""
    data = trust.sign(root)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(TrustListError):
            TrustList.from_signed(bytes(bad), root.public_bytes)


@pytest.mark.parametrize("problem", ["missing", "garbage"])
def test_unreadable_files_are_bad_trust_lists(
    tmp_path: Path, root: SigningKey, problem: str
) -> None:
    """A missing or garbage trust file is BAD_TRUST_LIST."""
    if problem == "garbage":
        (tmp_path / "trust.list").write_bytes(b"\xc3\x01garbage")
    with pytest.raises(TrustListError):
        load_trust_list(tmp_path / "trust.list", root.public_bytes)


def test_signing_key_lookup_checks_existence_validity_and_revocation(
    trust: TrustList, fr: SigningKey
) -> None:
    """Look-ups refuse unknown keys, times outside the window, and times at/after revocation."""
    assert trust.signing_key(fr.key_id, T0) == ("FR", fr.public_bytes)
    with pytest.raises(VerificationError) as info:
        trust.signing_key(KeyId("0" * 16), T0)
    assert info.value.reason is Reason.UNKNOWN_KEY
    with pytest.raises(VerificationError) as info:
        trust.signing_key(fr.key_id, T0 - timedelta(milliseconds=1))
    assert info.value.reason is Reason.KEY_NOT_VALID_AT_TIME
    with pytest.raises(VerificationError) as info:
        trust.signing_key(fr.key_id, T0 + timedelta(days=365))  # valid_until is exclusive
    assert info.value.reason is Reason.KEY_NOT_VALID_AT_TIME
    revoked = trust.revoke(fr.key_id, LATER, "compromised")
    assert revoked.version == 2
    assert revoked.signing_key(fr.key_id, LATER - timedelta(milliseconds=1))[0] == "FR"
    with pytest.raises(VerificationError) as info:
        revoked.signing_key(fr.key_id, LATER)
    assert info.value.reason is Reason.REVOKED_KEY


def test_revocation_survives_signing(trust: TrustList, root: SigningKey, fr: SigningKey) -> None:
    """A revocation travels in the signed file."""
    loaded = TrustList.from_signed(
        trust.revoke(fr.key_id, LATER, "retired").sign(root), root.public_bytes
    )
    assert loaded.revocations[fr.key_id].reason == "retired"
    assert loaded.revocations[fr.key_id].revoked_at == LATER


def test_encryption_key_lookup(trust: TrustList) -> None:
    """A member's valid encryption key is found; a non-member is UNKNOWN_SENDER."""
    assert (
        trust.encryption_key(NodeId("DE"), LATER) == trust.members[NodeId("DE")].encryption_keys[0]
    )
    with pytest.raises(VerificationError) as info:
        trust.encryption_key(NodeId("XX"), LATER)
    assert info.value.reason is Reason.UNKNOWN_SENDER
    with pytest.raises(VerificationError) as info:
        trust.encryption_key(NodeId("DE"), T0 - timedelta(days=1))
    assert info.value.reason is Reason.KEY_NOT_VALID_AT_TIME


def test_inconsistent_lists_are_refused(root: SigningKey, fr: SigningKey) -> None:
    """Duplicate members, duplicate keys and key ids not matching their key are refused."""
    m = _member("FR", fr)
    with pytest.raises(TrustListError, match="listed twice"):
        TrustList(
            federation="t",
            version=1,
            issued_at=T0,
            root_public_key=root.public_bytes,
            members=[m, m],
        )
    bad = Member(NodeId("FR"), "x", (KeyEntry(KeyId("0" * 16), fr.public_bytes, T0),), ())
    with pytest.raises(TrustListError, match="does not match"):
        TrustList(
            federation="t",
            version=1,
            issued_at=T0,
            root_public_key=root.public_bytes,
            members=[bad],
        )


def test_sign_refuses_a_key_other_than_the_root(trust: TrustList) -> None:
    """Only the root key named in the list can sign it."""
    with pytest.raises(TrustListError):
        trust.sign(SigningKey.generate())


#: The identity point (small order 1) and a point of order 8 (from the ZIP-215 vectors).
SMALL_ORDER_KEYS = [
    bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
]
#: A forgery valid under ZIP-215 for any message and any small-order key: R = identity, S = 0.
FORGED = SMALL_ORDER_KEYS[0] + bytes(32)


@pytest.mark.parametrize("public_key", SMALL_ORDER_KEYS)
def test_small_order_signing_keys_are_refused_when_built(
    root: SigningKey, public_key: bytes
) -> None:
    """A trust list naming a small-order signing key is refused: anyone could sign for it."""
    crypto.verify(public_key, FORGED, b"any message at all")  # why: the forgery holds
    member = Member(NodeId("FR"), "x", (KeyEntry.for_key(public_key, T0),), ())
    with pytest.raises(TrustListError, match="anyone could sign") as caught:
        TrustList(
            federation="t",
            version=1,
            issued_at=T0,
            root_public_key=root.public_bytes,
            members=[member],
        )
    assert caught.value.field == "members[0].signing_keys[0].public_key"


def test_small_order_signing_key_in_a_signed_file_is_refused_when_loaded(
    trust: TrustList, root: SigningKey
) -> None:
    """A root-signed file naming a small-order signing key is refused on loading too."""
    record = trust.to_avro()
    key = SMALL_ORDER_KEYS[1]
    record["members"][0]["signing_keys"][0].update(public_key=key, key_id=key_id_for(key))
    body = codec.encode("TrustList", record)
    data = codec.encode_signed(body, root.sign(body), root.key_id)
    with pytest.raises(TrustListError, match="anyone could sign"):
        TrustList.from_signed(data, root.public_bytes)


def test_small_order_root_key_is_refused_before_its_forged_signature_counts(
    trust: TrustList,
) -> None:
    """A small-order root key is refused, though a forged root signature would verify."""
    root_key = SMALL_ORDER_KEYS[0]
    body = trust.encode()
    data = codec.encode_signed(body, FORGED, key_id_for(root_key))
    with pytest.raises(TrustListError, match="anyone could sign") as caught:
        TrustList.from_signed(data, root_key)
    assert caught.value.field == "root_public_key"
