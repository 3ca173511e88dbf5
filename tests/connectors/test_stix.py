"""The STIX 2.1 mapping: every exported bundle passes the OASIS validator and imports back to
the same alert; patterns that say more than an alert can hold are refused by object, with why."""

from __future__ import annotations

import json
from typing import Any

import pytest
import stix2

from connectors.stix import Defaults, alert_bundle, objects_to_alerts
from tests.connectors.helpers import NOW, assert_valid_stix, normal, payload, record

DEFAULTS = Defaults(country_of_origin="DE")


@pytest.mark.parametrize("tlp", ["CLEAR", "GREEN", "AMBER", "AMBER_STRICT", "RED"])
def test_an_exported_alert_is_a_valid_bundle_that_imports_back_unchanged(tlp: str) -> None:
    """Every indicator type and every TLP level: the bundle validates, and importing it gives
    the same alert (id, title, category, indicators, case reference) and the same marking."""
    shared = record(tlp=tlp, code="H2")
    bundle = alert_bundle(shared)
    assert_valid_stix(bundle)
    types = sorted({o["type"] for o in bundle["objects"]})
    assert types == ["identity", "indicator", "marking-definition", "report"]
    identity = next(o for o in bundle["objects"] if o["type"] == "identity")
    assert identity["name"] == "NCP FR"

    result = objects_to_alerts(bundle["objects"], DEFAULTS, now=NOW)
    assert result.refused == []
    [alert] = result.alerts
    assert normal(alert.payload) == dict(shared.payload)
    assert (alert.handling["tlp"], alert.handling["code"]) == (tlp, "H2")


def test_the_same_alert_always_exports_the_same_objects() -> None:
    """Ids are derived, not random: a redelivery after a crash writes the same objects."""
    shared = record()
    assert alert_bundle(shared) == alert_bundle(shared)


def test_an_indicator_made_by_the_stix2_library_imports_as_an_alert() -> None:
    """A CERT's indicator (TLP 1.0 AMBER marking, no ncp labels) becomes an alert with the
    defaults for what it does not say."""
    indicator = stix2.v21.Indicator(
        name="C2 server",
        description="Botnet controller",
        pattern="[ipv4-addr:value = '198.51.100.9']",
        pattern_type="stix",
        valid_from="2026-11-27T10:00:00Z",
        object_marking_refs=[stix2.TLP_AMBER],
    )
    objects = [json.loads(stix2.TLP_AMBER.serialize()), json.loads(indicator.serialize())]
    result = objects_to_alerts(objects, DEFAULTS, now=NOW)
    assert result.refused == []
    [alert] = result.alerts
    assert alert.payload["indicators"] == [{"type": "IP_ADDRESS", "value": "198.51.100.9"}]
    assert alert.payload["country_of_origin"] == "DE"
    assert alert.payload["category"] == "OTHER"
    assert alert.handling["tlp"] == "AMBER"
    assert result.context == [stix2.TLP_AMBER.id]


def _indicator(pattern: str, sid: str) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": sid,
        "created": "2026-11-27T10:00:00.000Z",
        "modified": "2026-11-27T10:00:00.000Z",
        "name": "x",
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2026-11-27T10:00:00Z",
    }


REFUSED = [
    ("[url:value = 'https://a.example/'] WITHIN 300 SECONDS", "qualifiers"),
    (
        "[url:value = 'https://a.example/'] FOLLOWEDBY [domain-name:value = 'b.example']",
        "one observation",
    ),
    ("[domain-name:value MATCHES '^evil']", "operator 'MATCHES'"),
    ("[domain-name:value != 'good.example']", "operator '!='"),
    ("[process:name = 'evil.exe']", "object type 'process'"),
    ("[file:name = 'evil.exe']", "file:name is not supported"),
    ("[url:value = ", "not a valid STIX 2.1 pattern"),
    ("[url:value = 'not a url']", "indicators"),
    ("[user-account:account_login = 'bob']", "exactly one account_login and one account_type"),
]


@pytest.mark.parametrize(("pattern", "reason"), REFUSED)
def test_an_unmappable_pattern_is_refused_by_id_and_the_rest_imported(
    pattern: str, reason: str
) -> None:
    """The refusal names the object and says why; a good indicator beside it still imports."""
    bad = "indicator--0b8a4d30-5f6e-4c1b-9b3e-0c8d9a1b2c3d"
    good = "indicator--7c4f1f6e-2d3a-4b5c-8d9e-0f1a2b3c4d5e"
    objects = [_indicator(pattern, bad), _indicator("[domain-name:value = 'ok.example']", good)]
    result = objects_to_alerts(objects, DEFAULTS, now=NOW)
    assert [a.source for a in result.alerts] == [good]
    [(sid, why)] = result.refused
    assert sid == bad
    assert reason in why


def test_a_report_naming_an_indicator_outside_the_envelope_is_refused() -> None:
    """A report's alert needs all its indicators: one missing refuses the report, by id."""
    bundle = alert_bundle(record(payload()))
    objects = [o for o in bundle["objects"] if o["type"] != "indicator"]
    result = objects_to_alerts(objects, DEFAULTS, now=NOW)
    assert result.alerts == []
    [(sid, why)] = result.refused
    assert sid.startswith("report--")
    assert "not in the same envelope" in why


def test_objects_other_than_indicators_and_reports_are_refused_not_ignored() -> None:
    """A malware object (or anything not an alert) is named among the refused."""
    malware = json.loads(stix2.v21.Malware(name="x", is_family=False).serialize())
    result = objects_to_alerts([malware, "junk"], DEFAULTS, now=NOW)
    assert [sid for sid, _ in result.refused] == ["objects[1]", malware["id"]]


def test_a_handling_code_h3_is_refused_for_want_of_its_restriction() -> None:
    """H3 needs a free-text restriction, which a STIX marking does not carry: refused."""
    bundle = alert_bundle(record(code="H3"))
    assert_valid_stix(bundle)
    result = objects_to_alerts(bundle["objects"], DEFAULTS, now=NOW)
    assert result.alerts == []
    assert "H3 needs a restriction" in result.refused[0][1]
