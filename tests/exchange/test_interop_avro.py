"""Interoperability with Apache Avro's own Python implementation (the ``avro`` package).

Apache's Python canonical form deviates from the specification (and from Java and
fastavro) in two ways, undone by :func:`standardise` before comparing; fingerprints are
compared directly where its canonical form is already standard. The bytes themselves are
interchangeable for every schema.
"""

from __future__ import annotations

import io
import json
from typing import Any

import avro.io
import avro.schema
import pytest

from exchange import codec
from tests.vectors import samples

RECORDS = samples.all_records()


def apache_schema(name: str) -> Any:
    return avro.schema.parse(json.dumps(codec.REGISTRY.current(name).schema))


PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def standardise(canonical: str) -> str:
    """Apache Python's canonical form, with its two deviations from the spec undone.

    It keeps ``{"type":"long"}`` where a logical type was stripped (the spec's
    [PRIMITIVES] rule says ``"long"``), and repeats a named type's definition where the
    spec refers to it by full name after its first definition.
    """
    seen: set[str] = set()

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"type"} and node["type"] in PRIMITIVES:
            return node["type"]
        if node.get("type") in ("record", "enum", "fixed"):
            if node["name"] in seen:
                return node["name"]
            seen.add(node["name"])
        return {k: walk(v) for k, v in node.items()}

    return json.dumps(walk(json.loads(canonical)), separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_apache_avro_reads_what_we_write(name: str) -> None:
    """Our single-object bytes, header stripped, decode with Apache's DatumReader."""
    schema_name, record = RECORDS[name]
    data = codec.encode(schema_name, record)
    schema = apache_schema(schema_name)
    decoded = avro.io.DatumReader(schema, schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert decoded == codec.decode(data)[1]


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_we_read_what_apache_avro_writes(name: str) -> None:
    """A record Apache's DatumWriter encodes, behind our header, decodes with our codec."""
    schema_name, record = RECORDS[name]
    schema = apache_schema(schema_name)
    out = io.BytesIO()
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(out))
    data = codec.REGISTRY.current(schema_name).header + out.getvalue()
    assert data == codec.encode(schema_name, record)
    assert codec.decode(data) == (f"eu.ncp.exchange.{schema_name}", record)


def test_canonical_forms_agree_with_apache_avro() -> None:
    """Apache's canonical form, its known deviations undone, is ours for every schema."""
    for ps in codec.REGISTRY.all():
        schema = avro.schema.parse(json.dumps(ps.schema))
        assert standardise(schema.canonical_form) == ps.canonical, ps.name


def test_fingerprints_agree_with_apache_avro_where_its_canonical_form_is_standard() -> None:
    """Where Apache's canonical form is already standard, its CRC-64-AVRO fingerprint is ours."""
    compared = 0
    for ps in codec.REGISTRY.all():
        schema = avro.schema.parse(json.dumps(ps.schema))
        if schema.canonical_form == ps.canonical:
            assert schema.fingerprint("CRC-64-AVRO") == ps.fingerprint, ps.name
            compared += 1
    assert compared >= 5
