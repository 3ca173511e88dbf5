"""JsonText: an opened payload kept as its JSON text, read as a mapping, stored as is."""

from __future__ import annotations

import json
import pickle
from types import SimpleNamespace

import pytest

from exchange.topics import MessageType
from nodes.pipeline import from_wire, open_raw, ready, to_wire
from nodes.pipeline.opening import payload_text
from nodes.pipeline.records import OpenedRecord, RawRecord
from nodes.rules import Incoming, drop_fields
from nodes.store.codecs import _ENCODER, dump_json
from nodes.store.jsontext import JsonText
from tests.helpers.federation import NOW, Federation, sample_payloads
from tests.node.test_pipeline import context, raw


@pytest.mark.parametrize("message_type", list(MessageType))
def test_every_payload_type_serialises_exactly_as_the_store_encodes_it(
    message_type: MessageType,
) -> None:
    """pydantic's JSON text of each payload type equals the store's encoding of its dict, so
    a stored record reads the same whichever side wrote it."""
    payload = sample_payloads()[message_type]
    assert payload.model_dump_json() == _ENCODER.encode(payload.model_dump(mode="json"))


@pytest.mark.parametrize("message_type", list(MessageType))
def test_the_values_read_ahead_are_those_the_text_holds(message_type: MessageType) -> None:
    """payload_text's category, read without parsing, equals the parsed text's."""
    text = payload_text(sample_payloads()[message_type])
    parsed = json.loads(text.text)
    assert text.known is None or all(parsed[k] == v for k, v in text.known.items())
    assert text.get("category") == parsed.get("category")
    if message_type is MessageType.OFFENCE_ALERT:
        assert text.known == {"category": parsed["category"]}


def test_a_value_read_ahead_is_answered_without_parsing() -> None:
    """Reading a known key leaves the text unparsed; any other key parses it once."""
    text = JsonText('{"category":"FRAUD","title":"x"}', {"category": "FRAUD"})
    assert text["category"] == "FRAUD"
    assert "category" in text
    assert text._data is None
    assert text["title"] == "x"
    assert text._data is not None


def test_it_reads_as_the_mapping_its_text_holds() -> None:
    """Keys, values, length, membership and equality are those of the parsed object."""
    text = JsonText('{"a":1,"b":{"c":[1,2]},"é":"ü"}')
    assert text["b"] == {"c": [1, 2]}
    assert len(text) == 3
    assert "é" in text
    assert "z" not in text
    assert text.get("z") is None
    assert text == {"a": 1, "b": {"c": [1, 2]}, "é": "ü"}
    assert dict(text) == {"a": 1, "b": {"c": [1, 2]}, "é": "ü"}


def test_the_store_writes_its_text_unchanged_and_a_changed_copy_encoded_anew() -> None:
    """dump_json returns the text itself; a rule's changed payload is a new mapping."""
    text = JsonText('{"title":"x","secret":"y"}')
    assert dump_json(text, "payload") is text.text
    item = Incoming(
        envelope=SimpleNamespace(message_type=MessageType.OFFENCE_ALERT),
        payload=text,
        topic="t",
        partition=0,
        offset=0,
        received_at=NOW,
    )
    changed = drop_fields(["secret"])(item)
    assert changed.payload is not None
    assert dump_json(changed.payload, "payload") == '{"title":"x"}'


def test_it_pickles_as_its_text() -> None:
    """Across the process pool it travels as its text and is equal on arrival."""
    text = JsonText('{"a":[1,2,3]}', {"a": [1, 2, 3]})
    back = pickle.loads(pickle.dumps(text))  # noqa: S301 - bytes this test made
    assert isinstance(back, JsonText)
    assert back.text == text.text
    assert back.known == text.known
    assert back == {"a": [1, 2, 3]}


def test_text_that_is_not_an_object_fails_on_first_read() -> None:
    """A JSON array or broken text is refused when read, never taken for a payload."""
    with pytest.raises(ValueError, match="JSON object"):
        len(JsonText("[1,2]"))
    with pytest.raises(json.JSONDecodeError):
        JsonText("{").get("a")


def test_an_opened_record_crosses_the_wire_with_its_payload_as_text(
    federation: Federation,
) -> None:
    """ready() keeps the payload as JSON text, to_wire ships the text, from_wire rewraps it."""
    sealed = federation.member("FR").alert()
    record: RawRecord = raw(sealed)
    opened = ready(open_raw(record, context(federation), NOW))
    assert isinstance(opened, OpenedRecord)
    payload = opened.payload
    assert isinstance(payload, JsonText)
    wire = to_wire(opened)
    assert wire[-2:] == (payload.text, payload.known)
    back = from_wire(record, wire, NOW)
    assert isinstance(back, OpenedRecord)
    assert isinstance(back.payload, JsonText)
    assert back.payload == payload
    assert back.payload.known == payload.known == {"category": payload["category"]}
