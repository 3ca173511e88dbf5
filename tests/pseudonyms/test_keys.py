"""The federation pseudonym key: blinding, wrapping for members, rotation with a grace."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from exchange.errors import ConfidentialityError
from exchange.ids import NodeId
from exchange.pseudonyms.keys import blind, keyring_for, new_key, unwrap
from exchange.pseudonyms.rotation import rotate
from exchange.trust import TrustList
from tests.helpers.federation import NOW, Federation, make_federation


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return make_federation(tmp_path_factory.mktemp("keys"))


def keyring(fed: Federation, node: str, trust: TrustList | None = None):  # type: ignore[no-untyped-def]
    return keyring_for(
        (trust or fed.trust).pseudonym_keys, NodeId(node), fed.nodes[node].encryption
    )


def test_blinding_is_keyed_and_binds_the_platform() -> None:
    """Another key, another platform or another handle: another hash; same inputs: same."""
    k1, k2 = new_key(NOW), new_key(NOW)
    assert blind(k1.secret, "x", "bob") == blind(k1.secret, "x", "bob")
    assert blind(k1.secret, "x", "bob") != blind(k2.secret, "x", "bob")
    assert blind(k1.secret, "x", "bob") != blind(k1.secret, "telegram", "bob")
    assert blind(k1.secret, "x", "bob") != blind(k1.secret, "x", "bob2")


def test_federation_init_wraps_one_key_that_every_member_opens_alike(fed: Federation) -> None:
    """The trust list's key opens for FR, DE and NL to the same secret, named by its id."""
    (wrapped,) = fed.trust.pseudonym_keys
    secrets = {keyring(fed, n).current.secret for n in ("FR", "DE", "NL")}  # type: ignore[union-attr]
    assert len(secrets) == 1
    assert keyring(fed, "FR").current.key_id == wrapped.key_id  # type: ignore[union-attr]


def test_a_member_cannot_open_the_key_with_another_members_encryption_key(fed: Federation) -> None:
    """NL's key, posing as FR: the wrapped key does not open."""
    (wrapped,) = fed.trust.pseudonym_keys
    with pytest.raises(ConfidentialityError):
        unwrap(wrapped, NodeId("FR"), fed.nodes["NL"].encryption)


def test_the_keys_survive_signing_and_loading_the_trust_list(fed: Federation) -> None:
    """pseudonym_keys round-trip through the signed trust list's Avro bytes."""
    again = TrustList.from_signed(fed.trust.sign(fed.root), fed.root.public_bytes)
    assert again.pseudonym_keys == fed.trust.pseudonym_keys


def test_rotation_keeps_the_previous_key_for_its_grace_then_drops_it(fed: Federation) -> None:
    """After a rotation the old key is answered until grace_until, never after; a second
    rotation past the grace drops it from the list."""
    old = keyring(fed, "DE").current
    assert old is not None
    later = NOW + timedelta(days=1)
    rotated = rotate(fed.trust, later, grace=timedelta(hours=24))
    assert rotated.version == fed.trust.version + 1
    ring = keyring(fed, "DE", rotated)
    assert ring.current is not None
    assert ring.current.key_id != old.key_id
    assert ring.accepted(old.key_id, later + timedelta(hours=23)) is not None
    assert ring.accepted(old.key_id, later + timedelta(hours=24)) is None
    assert ring.accepted(ring.current.key_id, later + timedelta(days=400)) is not None
    again = rotate(rotated, later + timedelta(hours=25))
    assert old.key_id not in {w.key_id for w in again.pseudonym_keys}
    assert len(again.pseudonym_keys) == 2  # the new current one and its predecessor in grace


def test_a_member_added_after_a_key_was_made_does_not_hold_it(tmp_path: Path) -> None:
    """Keys are wrapped for the members of their day; the next rotation includes newcomers."""
    small = make_federation(tmp_path / "f", nodes=("FR", "DE"))
    big = make_federation(tmp_path / "g", nodes=("FR", "DE", "PL"))
    pl = big.trust.members[NodeId("PL")]
    grown = small.trust.with_member(pl, issued_at=NOW)
    ring = keyring_for(grown.pseudonym_keys, NodeId("PL"), big.nodes["PL"].encryption)
    assert ring.current is None
    rotated = rotate(grown, NOW + timedelta(hours=1))
    ring = keyring_for(rotated.pseudonym_keys, NodeId("PL"), big.nodes["PL"].encryption)
    assert ring.current is not None
