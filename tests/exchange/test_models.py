"""Payload models: round trips through the codec, record keys, and validation naming fields."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import codec
from exchange.errors import InputError, Reason, WireError
from exchange.ids import NodeId
from exchange.models import (
    MODELS,
    Handling,
    HandlingCode,
    InformationReliability,
    OffenceAlert,
    Retraction,
    StatisticalIndicator,
    decode_payload,
    encode_payload,
    from_avro,
    parse_payload,
    payload_type,
    record_key,
    to_avro,
)
from exchange.models.validators import COUNTRIES, EEA
from exchange.topics import MessageType
from tests.vectors.samples import ALERT_ID, NOW, PAYLOADS, QUERY_ID, envelope_record

ALERT = PAYLOADS[MessageType.OFFENCE_ALERT]


def alert_with(**changes: Any) -> dict[str, Any]:
    return {**ALERT, **changes}


def indicator_problems(*indicators: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InputError) as info:
        parse_payload(MessageType.OFFENCE_ALERT, alert_with(indicators=list(indicators)), now=NOW)
    return info.value.problems


@pytest.mark.parametrize("message_type", list(MessageType))
def test_every_payload_type_round_trips_through_the_codec(message_type: MessageType) -> None:
    """parse -> encode_payload -> decode_payload gives an equal model of the same type."""
    payload = parse_payload(message_type, PAYLOADS[message_type], now=NOW)
    assert payload_type(payload) is message_type
    data = encode_payload(payload)
    assert codec.decode(data)[0] == f"eu.ncp.exchange.{message_type.value}"
    assert decode_payload(data, now=NOW) == payload
    assert decode_payload(data, now=NOW, expected=message_type) == payload


def test_record_keys_follow_the_architecture() -> None:
    """Alert id, list id, query id, sender:period start; a Retraction has none of its own."""
    sender = NodeId("PL")
    keys = {mt: record_key(parse_payload(mt, PAYLOADS[mt], now=NOW), sender) for mt in MessageType}
    assert keys == {
        MessageType.OFFENCE_ALERT: ALERT_ID,
        MessageType.BLACKLIST_DELTA: "fr.csam-urls",
        MessageType.PSEUDONYM_QUERY: QUERY_ID,
        MessageType.PSEUDONYM_RESPONSE: QUERY_ID,
        MessageType.STATISTICAL_INDICATOR: "PL:2026-10-01",
        MessageType.RETRACTION: None,
    }


def test_uuid_fields_use_fixed_bytes_or_text_as_the_schema_says() -> None:
    """Retraction ids become 16 raw bytes; an alert id stays canonical text."""
    retraction = parse_payload(MessageType.RETRACTION, PAYLOADS[MessageType.RETRACTION], now=NOW)
    assert isinstance(retraction, Retraction)
    record = to_avro(retraction)
    assert record["retracted_message_id"] == UUID(retraction.retracted_message_id.hex).bytes
    alert = to_avro(parse_payload(MessageType.OFFENCE_ALERT, ALERT, now=NOW))
    assert alert["alert_id"] == ALERT_ID


def test_timestamps_are_kept_in_utc_at_millisecond_precision() -> None:
    """An offset timestamp with microseconds becomes UTC, truncated to the millisecond."""
    alert = parse_payload(
        MessageType.OFFENCE_ALERT,
        alert_with(observed_at="2026-11-27T11:30:00.123456+02:00"),
        now=NOW,
    )
    assert isinstance(alert, OffenceAlert)
    assert alert.observed_at == datetime(2026, 11, 27, 9, 30, 0, 123000, tzinfo=UTC)


def test_a_timestamp_in_the_future_is_refused_using_the_given_now() -> None:
    """observed_at beyond now + skew names the field; the same input passes with a later now."""
    later = (NOW + timedelta(minutes=10)).isoformat()
    with pytest.raises(InputError) as info:
        parse_payload(MessageType.OFFENCE_ALERT, alert_with(observed_at=later), now=NOW)
    assert info.value.problems[0][0] == "observed_at"
    assert "future" in info.value.problems[0][1]
    ok = parse_payload(
        MessageType.OFFENCE_ALERT, alert_with(observed_at=later), now=NOW + timedelta(hours=1)
    )
    assert isinstance(ok, OffenceAlert)


def test_a_timestamp_without_timezone_is_refused() -> None:
    """A naive timestamp is ambiguous and refused, naming the field."""
    problems = _problems(MessageType.OFFENCE_ALERT, alert_with(observed_at="2026-11-27T09:30:00"))
    assert problems[0][0] == "observed_at"


def _problems(message_type: MessageType, data: Any) -> list[tuple[str, str]]:
    with pytest.raises(InputError) as info:
        parse_payload(message_type, data, now=NOW)
    return info.value.problems


def test_parse_payload_lists_every_problem() -> None:
    """Three bad fields give three problems, each naming its field path."""
    problems = _problems(
        MessageType.OFFENCE_ALERT,
        alert_with(language="french", country_of_origin="fr", category="SPAM"),
    )
    assert [field for field, _ in problems] == ["category", "language", "country_of_origin"]
    assert "upper case" in problems[2][1]


@pytest.mark.parametrize(
    ("algorithm", "length"), [("MD5", 32), ("SHA1", 40), ("SHA256", 64), ("SHA512", 128)]
)
def test_file_hash_length_follows_the_algorithm(algorithm: str, length: int) -> None:
    """A digest of the right hex length passes; one digit short or non-hex fails on value."""
    good = {"type": "FILE_HASH", "hash_algorithm": algorithm, "value": "a" * length}
    parse_payload(MessageType.OFFENCE_ALERT, alert_with(indicators=[good]), now=NOW)
    short = {**good, "value": "a" * (length - 1)}
    not_hex = {**good, "value": "g" * length}
    problems = indicator_problems(short, not_hex)
    assert [f for f, _ in problems] == ["indicators.0.value", "indicators.1.value"]
    assert f"{length} hex digits" in problems[0][1]


@pytest.mark.parametrize(
    ("indicator", "field", "reason"),
    [
        ({"type": "URL", "value": "javascript:alert(1)"}, "value", "scheme"),
        ({"type": "URL", "value": "https://"}, "value", "no host"),
        ({"type": "URL", "value": "http://exa mple.com/"}, "value", "spaces"),
        ({"type": "URL", "value": "http://bad_host.example/"}, "value", "domain"),
        ({"type": "DOMAIN", "value": "localhost"}, "value", "domain"),
        ({"type": "DOMAIN", "value": "-bad.example"}, "value", "domain"),
        ({"type": "DOMAIN", "value": "example.123"}, "value", "numeric"),
        ({"type": "IP_ADDRESS", "value": "256.1.1.1"}, "value", "IPv4"),
        ({"type": "IP_ADDRESS", "value": "01.2.3.4"}, "value", "IPv4"),
        ({"type": "EMAIL", "value": "no-at-sign.example"}, "value", "e-mail"),
        ({"type": "CRYPTO_WALLET", "value": "short", "currency": "BTC"}, "value", "wallet"),
        ({"type": "CRYPTO_WALLET", "value": "a" * 30, "currency": "btc"}, "currency", "ticker"),
        ({"type": "CRYPTO_WALLET", "value": "a" * 30}, "currency", "needs currency"),
        ({"type": "FILE_HASH", "value": "a" * 32}, "hash_algorithm", "needs hash_algorithm"),
        ({"type": "ONLINE_HANDLE", "value": "@x"}, "platform", "needs platform"),
        ({"type": "EMAIL", "value": "a@b.example", "platform": "X"}, "platform", "only a"),
        (
            {"type": "URL", "value": "https://a.example/", "hash_algorithm": "MD5"},
            "hash_algorithm",
            "only",
        ),
    ],
)
def test_indicator_syntax_errors_name_the_field(
    indicator: dict[str, Any], field: str, reason: str
) -> None:
    """Each malformed indicator is refused with its field path and a reason in words."""
    problems = indicator_problems(indicator)
    assert problems[0][0] == f"indicators.0.{field}"
    assert reason in problems[0][1]


@pytest.mark.parametrize(
    ("indicator"),
    [
        {"type": "URL", "value": "ftp://192.0.2.1:21/pub/file.zip"},
        {"type": "URL", "value": "https://[2001:db8::1]/x"},
        {"type": "DOMAIN", "value": "bücher.example"},
        {"type": "DOMAIN", "value": "xn--bcher-kva.example."},
        {"type": "IP_ADDRESS", "value": "2001:db8::1"},
        {"type": "EMAIL", "value": "first.last+tag@例え.jp"},
    ],
)
def test_valid_indicator_forms_are_accepted(indicator: dict[str, Any]) -> None:
    """IP hosts, IDNA domains, trailing dots and IPv6 are valid observables."""
    parse_payload(MessageType.OFFENCE_ALERT, alert_with(indicators=[indicator]), now=NOW)


def test_country_codes_cover_the_eea_and_refuse_unknown_codes() -> None:
    """Every EU/EEA state is a valid country code; "EL" and "UK" (not ISO) are refused."""
    assert len(COUNTRIES) == 249
    assert EEA <= COUNTRIES
    for code in ("EL", "UK"):
        problems = _problems(MessageType.OFFENCE_ALERT, alert_with(country_of_origin=code))
        assert problems[0][0] == "country_of_origin"


def test_handling_h3_needs_a_restriction_and_only_h3_has_one() -> None:
    """restriction is required with H3 and refused with any other code, naming the field."""
    base = {"tlp": "AMBER", "source_reliability": "A", "information_reliability": "ONE"}
    ok = Handling.model_validate({**base, "code": "H3", "restriction": "no onward sharing"})
    assert ok.code is HandlingCode.H3
    for data in ({**base, "code": "H3"}, {**base, "code": "H1", "restriction": "x"}):
        with pytest.raises(ValueError, match="restriction"):
            Handling.model_validate(data)
    assert InformationReliability.THREE.grade == 3


def test_blacklist_versions_and_entries_are_checked() -> None:
    """version must exceed base_version; an entry both added and removed is refused."""
    delta = PAYLOADS[MessageType.BLACKLIST_DELTA]
    problems = _problems(MessageType.BLACKLIST_DELTA, {**delta, "version": 41})
    assert problems[0][0] == "version"
    clash = {**delta, "removed": [{"kind": "DOMAIN", "value": "bad-host.example"}]}
    assert _problems(MessageType.BLACKLIST_DELTA, clash)[0][0] == "removed"
    bad_url = {**delta, "removed": [{"kind": "URL", "value": "not a url"}]}
    assert _problems(MessageType.BLACKLIST_DELTA, bad_url)[0][0] == "removed.0.value"


def test_pseudonym_no_hit_carries_no_details() -> None:
    """A no-hit response with details is refused on the details field."""
    data = {**PAYLOADS[MessageType.PSEUDONYM_RESPONSE], "hit": False}
    assert _problems(MessageType.PSEUDONYM_RESPONSE, data)[0][0] == "details"


def test_indicator_period_and_counts_are_checked() -> None:
    """period_end before period_start, a repeated category and a negative count are refused."""
    base = PAYLOADS[MessageType.STATISTICAL_INDICATOR]
    assert _problems(MessageType.STATISTICAL_INDICATOR, {**base, "period_end": "2026-09-30"})[0][
        0
    ] == ("period_end")
    twice = [{"category": "OTHER", "count": 1}, {"category": "OTHER", "count": 2}]
    assert _problems(MessageType.STATISTICAL_INDICATOR, {**base, "counts": twice})[0][0] == "counts"
    negative = [{"category": "OTHER", "count": -1}]
    assert _problems(MessageType.STATISTICAL_INDICATOR, {**base, "counts": negative})[0][0] == (
        "counts.0.count"
    )
    future = {**base, "period_start": "2026-12-01", "period_end": "2026-12-31"}
    assert _problems(MessageType.STATISTICAL_INDICATOR, future)[0][0] == "period_start"
    ok = parse_payload(MessageType.STATISTICAL_INDICATOR, base, now=NOW)
    assert isinstance(ok, StatisticalIndicator)
    assert ok.period_start == date(2026, 10, 1)


def test_retraction_superseded_by_only_when_corrected() -> None:
    """superseded_by with reason WITHDRAWN is refused on that field."""
    data = {**PAYLOADS[MessageType.RETRACTION], "reason": "WITHDRAWN"}
    assert _problems(MessageType.RETRACTION, data)[0][0] == "superseded_by"


def test_unknown_fields_and_non_objects_are_refused() -> None:
    """Local input with an extra field, or that is not an object, is refused."""
    assert _problems(MessageType.OFFENCE_ALERT, alert_with(priority=1))[0][0] == "priority"
    assert _problems(MessageType.OFFENCE_ALERT, ["not", "an", "object"])[0][0] == "(record)"


def test_from_avro_raises_invalid_payload_naming_the_field() -> None:
    """A decoded record with a bad indicator raises WireError(INVALID_PAYLOAD, field=path)."""
    record = to_avro(parse_payload(MessageType.OFFENCE_ALERT, ALERT, now=NOW))
    record["indicators"][2]["value"] = "999.1.1.1"
    with pytest.raises(WireError) as info:
        from_avro(MessageType.OFFENCE_ALERT, record)
    assert info.value.reason is Reason.INVALID_PAYLOAD
    assert info.value.field == "indicators.2.value"


def test_from_avro_checks_time_only_when_given_now() -> None:
    """The wire path applies the future check with now=..., and skips it without."""
    record = to_avro(parse_payload(MessageType.OFFENCE_ALERT, ALERT, now=NOW))
    early = NOW - timedelta(days=2)
    assert isinstance(from_avro(MessageType.OFFENCE_ALERT, record), OffenceAlert)
    with pytest.raises(WireError) as info:
        from_avro(MessageType.OFFENCE_ALERT, record, now=early)
    assert info.value.field == "observed_at"


def test_decode_payload_refuses_non_payload_records() -> None:
    """An Envelope's bytes are not a payload: MALFORMED."""
    with pytest.raises(WireError) as info:
        decode_payload(codec.encode("Envelope", envelope_record()), now=NOW)
    assert info.value.reason is Reason.MALFORMED


def test_every_message_type_has_a_model_and_a_schema() -> None:
    """Each MessageType maps to a model and a current Avro schema of the same name."""
    for message_type, model in MODELS.items():
        assert model.__name__ == message_type.value
        assert codec.REGISTRY.current(message_type.value).short_name == message_type.value


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(MessageType)), st.data())
def test_odd_local_input_raises_only_input_error(
    message_type: MessageType, data: st.DataObject
) -> None:
    """A sample with one field replaced by arbitrary JSON parses or raises InputError only."""
    sample = dict(PAYLOADS[message_type])
    name = data.draw(st.sampled_from(sorted(sample)))
    sample[name] = data.draw(JSON)
    try:
        parse_payload(message_type, sample, now=NOW)
    except InputError as exc:
        problems = exc.problems
    else:
        problems = [(name, "accepted")]
    assert problems
