"""Validation moved into pydantic-core's compiled constraints refuses what it refused before.

Single-line text is a compiled pattern now, and an indicator's fields are checked against
its type in one pass: each refusal still names its field and says why in words, on local
input (InputError) and on the wire (WireError), whatever field it sits in.
"""

from __future__ import annotations

from typing import Any

import pytest

from exchange import codec
from exchange.errors import InputError, Reason, WireError
from exchange.models import from_avro, parse_payload, to_avro
from exchange.models.common import LINE_REASON
from exchange.topics import MessageType
from tests.vectors.samples import NOW, PAYLOADS

ALERT = PAYLOADS[MessageType.OFFENCE_ALERT]
HANDLE = {"type": "ONLINE_HANDLE", "platform": "forum.example", "value": "@seller"}


def _problems(message_type: MessageType, data: Any) -> list[tuple[str, str]]:
    with pytest.raises(InputError) as info:
        parse_payload(message_type, data, now=NOW)
    return info.value.problems


@pytest.mark.parametrize("bad", ["a\nb", "trailing newline\n", "nul\x00", "del\x7f", "tab\tx"])
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (lambda s: {"title": s}, "title"),
        (lambda s: {"case_reference": s}, "case_reference"),
        (lambda s: {"indicators": [{**HANDLE, "value": s}]}, "indicators.0.value"),
        (lambda s: {"indicators": [{**HANDLE, "platform": s}]}, "indicators.0.platform"),
    ],
)
def test_a_control_character_in_single_line_text_is_refused_in_words(
    bad: str, changes: Any, field: str
) -> None:
    """Any control character (newline, NUL, DEL, tab, even at the end) in a Line is refused."""
    problems = _problems(MessageType.OFFENCE_ALERT, {**ALERT, **changes(bad)})
    assert problems == [(field, LINE_REASON)]


def test_a_control_character_in_a_pseudonym_query_is_refused_in_words() -> None:
    """The other models' single-line fields share the compiled check and its reason."""
    query = {**PAYLOADS[MessageType.PSEUDONYM_QUERY], "pseudonym": "x\ny"}
    assert _problems(MessageType.PSEUDONYM_QUERY, query) == [("pseudonym", LINE_REASON)]


def test_single_line_text_keeps_unicode_and_spaces() -> None:
    """Letters from any script, spaces and punctuation are single-line text."""
    alert = parse_payload(
        MessageType.OFFENCE_ALERT, {**ALERT, "title": "Faux colis \u2013 例え ü #1"}, now=NOW
    )
    assert alert.title == "Faux colis \u2013 例え ü #1"  # type: ignore[union-attr]


def test_every_field_at_odds_with_the_indicator_type_is_named() -> None:
    """A URL indicator with a platform, a currency and a bad URL lists all three problems."""
    indicator = {"type": "URL", "platform": "x", "currency": "BTC", "value": "ftp//nope"}
    problems = _problems(MessageType.OFFENCE_ALERT, {**ALERT, "indicators": [indicator]})
    assert [f for f, _ in problems] == [
        "indicators.0.platform",
        "indicators.0.currency",
        "indicators.0.value",
    ]
    assert "only a ONLINE_HANDLE indicator has platform, not a URL" in problems[0][1]


def test_a_reason_with_braces_is_reported_verbatim() -> None:
    """A hostile value with format braces in it is quoted as is, never formatted."""
    indicator = {"type": "DOMAIN", "value": "{reason}{0}.{x}"}
    problems = _problems(MessageType.OFFENCE_ALERT, {**ALERT, "indicators": [indicator]})
    assert problems[0][0] == "indicators.0.value"
    assert "'{reason}{0}.{x}'" in problems[0][1]


def test_a_wire_payload_with_a_control_character_is_refused_naming_the_field() -> None:
    """from_avro (the node's path) refuses a record whose title has a newline: INVALID_PAYLOAD."""
    record = to_avro(parse_payload(MessageType.OFFENCE_ALERT, ALERT, now=NOW))
    record["title"] = "two\nlines"
    _, decoded = codec.decode(codec.encode("OffenceAlert", record))
    with pytest.raises(WireError) as info:
        from_avro(MessageType.OFFENCE_ALERT, decoded, now=NOW)
    assert info.value.reason is Reason.INVALID_PAYLOAD
    assert info.value.field == "title"
    assert LINE_REASON in str(info.value)
