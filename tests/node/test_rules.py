"""The rule chain: small pure rules that keep, change, refuse or skip an incoming record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from exchange.ids import NodeId
from exchange.seal import Sealed
from nodes.config import TopicRules
from nodes.rules import (
    ADDRESSED_TO_OTHERS,
    EXPIRED,
    Drop,
    Incoming,
    Skip,
    apply,
    build_chain,
    drop_fields,
    may_share_onward,
    onward_withheld,
)
from tests.helpers.federation import ALERTS, NOW, Federation


def incoming(sealed: Sealed, payload: dict[str, Any] | None = None, **changes: Any) -> Incoming:
    data = payload if payload is not None else {"category": "FRAUDULENT_SALES", "title": "t"}
    return Incoming(
        envelope=sealed.envelope,
        payload=data,
        topic=ALERTS,
        partition=0,
        offset=7,
        received_at=changes.pop("received_at", NOW),
        **changes,
    )


@pytest.fixture
def from_fr(federation: Federation) -> Sealed:
    return federation.member("FR").alert()


def chain(**rules: Any) -> tuple[Any, ...]:
    return build_chain(TopicRules(**rules), NodeId("DE"))


def test_default_rules_keep_everything_unchanged(from_fr: Sealed) -> None:
    """With no rules configured a record addressed to everyone passes as it came."""
    item = incoming(from_fr)
    assert apply(chain(), item) == item


def test_sender_not_accepted_is_dropped_with_a_reason(from_fr: Sealed) -> None:
    """A sender outside accept_senders is refused with the code sender_not_accepted."""
    with pytest.raises(Drop) as caught:
        apply(chain(accept_senders=["NL"]), incoming(from_fr))
    assert caught.value.code == "sender_not_accepted"
    assert "FR" in caught.value.detail
    assert apply(chain(accept_senders=["NL", "FR"]), incoming(from_fr)).envelope.sender == "FR"


def test_category_not_kept_is_dropped(from_fr: Sealed) -> None:
    """Only the kept offence categories pass."""
    with pytest.raises(Drop) as caught:
        apply(chain(categories_kept=["IDENTITY_THEFT"]), incoming(from_fr))
    assert caught.value.code == "category_not_kept"
    kept = apply(chain(categories_kept=["FRAUDULENT_SALES"]), incoming(from_fr))
    assert kept.category == "FRAUDULENT_SALES"


def test_record_for_other_recipients_is_skipped_not_dropped(federation: Federation) -> None:
    """A record restricted to NL is skipped at DE (consumed, not quarantined)."""
    sealed = federation.member("FR").alert(tlp="RED", code="H2", recipients=["NL"])
    with pytest.raises(Skip) as caught:
        apply(chain(), incoming(sealed, payload=None))
    assert caught.value.code == ADDRESSED_TO_OTHERS


def test_drop_fields_removes_paths_including_inside_lists(from_fr: Sealed) -> None:
    """Minimisation removes top-level fields and a field in every element of a list."""
    payload = {
        "title": "t",
        "description": "secret",
        "indicators": [{"type": "DOMAIN", "value": "a"}, {"type": "URL", "value": "b"}],
    }
    item = apply(
        chain(drop_fields=["description", "indicators.value", "absent.field"]),
        incoming(from_fr, payload),
    )
    assert item.payload == {"title": "t", "indicators": [{"type": "DOMAIN"}, {"type": "URL"}]}
    assert item.dropped_fields == ("description", "indicators.value")
    assert payload["description"] == "secret"  # the input is never mutated


def test_drop_fields_leaves_retractions_alone(federation: Federation) -> None:
    """A Retraction's fields are needed to apply it: minimisation does not touch them."""
    sender = federation.member("FR")
    original = sender.alert()
    retraction = sender.retraction(original)
    payload = {"retracted_message_id": "x", "reason": "WITHDRAWN"}
    item = drop_fields(["reason"])(incoming(retraction, payload))
    assert item.payload == payload


def test_retention_sets_expiry_from_creation(from_fr: Sealed) -> None:
    """retention_days sets expires_at = created_at + days."""
    item = apply(chain(retention_days=30), incoming(from_fr))
    assert item.expires_at == from_fr.envelope.created_at + timedelta(days=30)


def test_already_expired_records_are_skipped(from_fr: Sealed) -> None:
    """A record older than the retention period when it arrives is not stored at all."""
    late = incoming(from_fr, received_at=NOW + timedelta(days=31))
    with pytest.raises(Skip) as caught:
        apply(chain(retention_days=30), late)
    assert caught.value.code == EXPIRED


def test_retractions_pass_the_category_rule(federation: Federation) -> None:
    """A sender may always withdraw what it shared, whatever categories are kept."""
    sender = federation.member("FR")
    original = sender.alert()
    retraction = sender.retraction(original)
    payload = {"retracted_message_id": str(original.envelope.message_id), "reason": "WITHDRAWN"}
    item = apply(chain(categories_kept=["IDENTITY_THEFT"]), incoming(retraction, payload))
    assert item.is_retraction


@pytest.mark.parametrize(
    ("code", "limit", "allowed"),
    [("H0", "H0", True), ("H1", "H0", False), ("H1", "H1", True), ("H2", "H3", True)],
)
def test_onward_sharing_by_handling_code(code: str, limit: str, allowed: bool) -> None:
    """A handling code at most the configured maximum may be shared onward."""
    assert may_share_onward(code, limit) is allowed


@pytest.mark.parametrize(
    ("code", "tlp", "max_code", "max_tlp", "allows", "reason"),
    [
        ("H0", "GREEN", "H1", "RED", frozenset(), None),
        ("H0", "AMBER", "H1", "RED", frozenset(), None),
        ("H2", "GREEN", "H1", "RED", frozenset(), "handling_code_above_topic_max"),
        ("H0", "AMBER", "H0", "GREEN", frozenset(), "tlp_above_topic_max"),
        ("H0", "RED", "H0", "RED", frozenset(), "tlp_not_allowed_by_connector"),
        ("H0", "AMBER_STRICT", "H0", "RED", frozenset({"RED"}), "tlp_not_allowed_by_connector"),
        ("H0", "RED", "H0", "RED", frozenset({"RED"}), None),
        ("H0", "AMBER_STRICT", "H0", "AMBER_STRICT", frozenset({"AMBER_STRICT"}), None),
        ("H0", "RED", "H0", "AMBER", frozenset({"RED"}), "tlp_above_topic_max"),
        ("H0", "PURPLE", "H0", "RED", frozenset(), "tlp_above_topic_max"),
    ],
)
def test_onward_sharing_needs_code_tlp_and_explicit_consent_for_red(
    code: str, tlp: str, max_code: str, max_tlp: str, allows: frozenset[str], reason: str | None
) -> None:
    """A record leaves only within the topic's handling code and TLP limits, and TLP:RED or
    AMBER+STRICT only to a connector naming that level; otherwise the reason is given."""
    assert (
        onward_withheld(
            handling_code=code, tlp=tlp, max_code=max_code, max_tlp=max_tlp, connector_allows=allows
        )
        == reason
    )
