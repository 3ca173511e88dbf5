"""Trust lists under wire v2: root pinned by fingerprint, versions only up, history by time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchange.errors import Reason, TrustListError
from exchange.ids import NodeId
from exchange.keys import EncryptionKey, SigningKey
from exchange.trust import (
    KeyEntry,
    Member,
    TrustHistory,
    TrustList,
    check_version,
    load_trust_list,
    root_fingerprint,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _list(root: SigningKey, version: int = 1) -> TrustList:
    member = Member(
        NodeId("FR"),
        "NCP FR",
        (KeyEntry.for_key(SigningKey.generate().public_bytes, T0),),
        (KeyEntry.for_key(EncryptionKey.generate().public_bytes, T0),),
    )
    return TrustList(
        federation="eu",
        version=version,
        issued_at=T0,
        root_public_key=root.public_bytes,
        members=[member],
    )


def test_a_list_signed_by_the_pinned_root_loads_without_any_root_file(tmp_path: Path) -> None:
    """With the fingerprint pinned, the list loads from its own bytes: no root.pub is read."""
    root = SigningKey.generate()
    path = tmp_path / "trust.list"
    path.write_bytes(_list(root).sign(root))
    loaded = load_trust_list(path, root_fingerprint=root_fingerprint(root.public_bytes))
    assert loaded.root_public_key == root.public_bytes
    assert not (tmp_path / "root.pub").exists()


def test_a_replaced_root_key_is_refused_whatever_lies_beside_the_list(tmp_path: Path) -> None:
    """Whoever replaces both the list and root.pub with their own root is refused by the pin
    (v1 read root.pub beside the list and accepted it)."""
    real, fake = SigningKey.generate(), SigningKey.generate()
    pin = root_fingerprint(real.public_bytes)
    path = tmp_path / "trust.list"
    path.write_bytes(_list(fake).sign(fake))
    fake.save(tmp_path / "root.key", tmp_path / "root.pub")
    assert load_trust_list(path).root_public_key == fake.public_bytes  # unpinned: fooled
    with pytest.raises(TrustListError) as info:
        load_trust_list(path, root_fingerprint=pin)
    assert info.value.reason is Reason.BAD_TRUST_LIST
    assert pin in info.value.detail


def test_a_root_file_that_disagrees_with_the_pin_is_refused(tmp_path: Path) -> None:
    """A root key file given beside the pin must have the pinned fingerprint too."""
    real, other = SigningKey.generate(), SigningKey.generate()
    path = tmp_path / "trust.list"
    path.write_bytes(_list(real).sign(real))
    with pytest.raises(TrustListError):
        load_trust_list(
            path, other.public_bytes, root_fingerprint=root_fingerprint(real.public_bytes)
        )


def test_a_lower_version_than_the_highest_accepted_is_a_rollback() -> None:
    """check_version refuses an older list with TRUST_LIST_ROLLBACK; equal or newer pass."""
    root = SigningKey.generate()
    check_version(_list(root, 3), None)
    check_version(_list(root, 3), 3)
    check_version(_list(root, 4), 3)
    with pytest.raises(TrustListError) as info:
        check_version(_list(root, 2), 3)
    assert info.value.reason is Reason.TRUST_LIST_ROLLBACK
    assert "version 2 is older than version 3" in info.value.detail


def test_history_gives_the_list_in_force_at_a_time() -> None:
    """Each list rules from its publication until the next; before the first, the oldest."""
    root = SigningKey.generate()
    v1, v2, v3 = (_list(root, v) for v in (1, 2, 3))
    ms = int((T0 + timedelta(days=1)).timestamp() * 1000)
    history = TrustHistory([(ms + 2000, v3), (ms, v1), (ms + 1000, v2)])
    assert history.at(ms - 1) is v1
    assert history.at(ms) is v1
    assert history.at(ms + 1500) is v2
    assert history.at(ms + 10**9) is v3
    assert history.latest is v3
