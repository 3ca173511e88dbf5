"""The MISP mapping: PyMISP loads every exported event, and events PyMISP makes import as
alerts; attributes an alert cannot hold are refused by uuid, the rest imported."""

from __future__ import annotations

import json

import pytest
from pymisp import MISPEvent, MISPObject

from connectors.misp import alert_event, event_to_alert
from tests.connectors.helpers import NOW, normal, record


@pytest.mark.parametrize("tlp", ["CLEAR", "GREEN", "AMBER", "AMBER_STRICT", "RED"])
def test_an_exported_event_loads_in_pymisp_and_imports_back_unchanged(tlp: str) -> None:
    """Every indicator type: MISPEvent loads the JSON, its TLP tag is the record's, and the
    event (as PyMISP writes it out again) imports as the same alert and handling."""
    shared = record(tlp=tlp, code="H2")
    event = MISPEvent()
    event.load(json.dumps(alert_event(shared)))
    assert str(event.uuid) == shared.payload["alert_id"]
    assert event.info == shared.payload["title"]
    tags = {t.name for t in event.tags}
    assert f"tlp:{tlp.lower().replace('_', '+')}" in tags
    assert {o.name for o in event.objects} == {"coin-address", "user-account"}
    assert {"url", "domain", "ip-dst", "email", "sha256", "md5"} <= {
        a.type for a in event.attributes
    }

    back = event_to_alert(json.loads(event.to_json()), country_of_origin="DE", now=NOW)
    assert back.refused == []
    assert back.payload is not None
    assert normal(back.payload) == dict(shared.payload)
    assert (back.handling["tlp"], back.handling["code"]) == (tlp, "H2")


def test_an_event_made_with_pymisp_imports_as_an_alert() -> None:
    """A CERT's event: flat attributes, a coin-address object, TLP and admiralty-scale tags."""
    event = MISPEvent()
    event.info = "Banking trojan C2"
    event.set_date("2026-11-27")
    event.add_tag("tlp:green")
    event.add_tag('admiralty-scale:source-reliability="b"')
    event.add_tag('admiralty-scale:information-credibility="2"')
    event.add_attribute("ip-src", "198.51.100.23")
    event.add_attribute("sha1", "c" * 40)
    event.add_attribute("hostname", "c2.bad.example")
    wallet = MISPObject("coin-address")
    wallet.add_attribute("address", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")
    wallet.add_attribute("symbol", "BTC")
    event.add_object(wallet)

    result = event_to_alert(json.loads(event.to_json()), country_of_origin="DE", now=NOW)
    assert result.refused == []
    assert result.payload is not None
    assert result.payload["alert_id"] == str(event.uuid)
    assert result.payload["country_of_origin"] == "DE"
    assert result.payload["observed_at"].startswith("2026-11-27")
    assert sorted(i["type"] for i in result.payload["indicators"]) == [
        "CRYPTO_WALLET", "DOMAIN", "FILE_HASH", "IP_ADDRESS"
    ]  # fmt: skip
    assert result.handling == {
        "tlp": "GREEN", "code": "H1", "source_reliability": "B", "information_reliability": "TWO"
    }  # fmt: skip


def test_an_attribute_without_an_indicator_type_is_refused_and_the_rest_imported() -> None:
    """A registry key is named by uuid and reason; the domain beside it still makes the alert."""
    event = MISPEvent()
    event.info = "Dropper"
    event.set_date("2026-11-27")
    event.add_attribute("domain", "drop.bad.example")
    regkey = event.add_attribute("regkey", "HKLM\\Software\\Evil")
    result = event_to_alert(json.loads(event.to_json()), country_of_origin="DE", now=NOW)
    assert result.payload is not None
    assert result.payload["indicators"] == [{"type": "DOMAIN", "value": "drop.bad.example"}]
    assert result.refused == [
        (str(regkey.uuid), "attribute type 'regkey' has no alert indicator type")
    ]


def test_an_event_with_no_valid_indicator_is_refused_whole_naming_the_field() -> None:
    """An invalid URL leaves no indicator: the event is refused, the problem says which field."""
    event = MISPEvent()
    event.info = "Bad"
    event.set_date("2026-11-27")
    event.add_attribute("url", "not a url")
    result = event_to_alert(json.loads(event.to_json()), country_of_origin="DE", now=NOW)
    assert result.payload is None
    [(where, why)] = result.refused
    assert where == f"event {event.uuid}"
    assert "indicators.0.value" in why
