"""``exchange schemas check``: backward compatibility with released schemas, and docs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from exchange import codec
from exchange.cli import main
from exchange.commands.schemas import run_check

SHIPPED = Path(str(files("exchange.schemas")))

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    """A copy of the shipped schema folder (current + release 1) to change.

    Later releases are left out, so each problem is named once (against release 1).
    """
    root = tmp_path / "schemas"
    shutil.copytree(SHIPPED, root, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    for later in (root / "history").iterdir():
        if later.name != "1":
            shutil.rmtree(later)
    return root


def edit(root: Path, name: str, change: Edit) -> None:
    path = root / f"{name}.avsc"
    schema = json.loads(path.read_text(encoding="utf-8"))
    change(schema)
    path.write_text(json.dumps(schema, indent=2), encoding="utf-8")


def field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in schema["fields"] if f["name"] == name)
    return found


def test_shipped_schemas_pass_the_check(capsys: pytest.CaptureFixture[str]) -> None:
    """The schemas of this release are documented and compatible with every released version."""
    problems, registry = run_check()
    assert problems == []
    assert {"1", "2", "3"} <= set(registry.versions())
    assert main(["schemas", "check"]) == 0
    assert "compatible with releases: 1, 2" in capsys.readouterr().out


def test_wire_v2_envelope_is_an_evolution_of_v1() -> None:
    """The v2 Envelope differs from v1 only by key_commitment, with a default, so v1 resolves."""
    registry = codec.SchemaRegistry()
    v1 = registry.versions()["1"]["eu.ncp.exchange.Envelope"]
    v2 = registry.current("Envelope")
    assert v1.fingerprint != v2.fingerprint
    assert v2.fingerprint == registry.versions()["2"]["eu.ncp.exchange.Envelope"].fingerprint
    assert "key_commitment" in v2.canonical
    assert "key_commitment" not in v1.canonical
    assert run_check()[0] == []


def test_release_1_is_a_copy_of_every_schema() -> None:
    """schemas/history/1 holds every current schema, so its data stays readable."""
    registry = codec.SchemaRegistry()
    assert set(registry.versions()["1"]) == set(registry.names())


def test_field_added_without_default_is_named(
    schemas: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new field without default fails the check, naming release, record and field."""
    edit(
        schemas,
        "OffenceAlert",
        lambda s: s["fields"].append({"name": "priority", "type": "int", "doc": "Urgency."}),
    )
    problems, _ = run_check(schemas)
    assert len(problems) == 1
    assert problems[0].startswith("release 1: OffenceAlert.priority:")
    assert "added without a default" in problems[0]
    assert main(["schemas", "check", "--schemas", str(schemas)]) == 1
    assert "OffenceAlert.priority" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        (
            "PseudonymQuery",
            lambda s: field(s, "platform").update(type="int"),
            "PseudonymQuery.platform: type changed incompatibly from string to int",
        ),
        (
            "Retraction",
            lambda s: field(s, "reason")["type"]["symbols"].remove("CORRECTED"),
            "Retraction.reason: enum RetractionReason lost symbol(s) CORRECTED",
        ),
        (
            "Envelope",
            lambda s: field(s, "previous_hash")["type"][1].update(size=16),
            "Envelope.previous_hash: fixed Sha256 size changed from 32 to 16",
        ),
        (
            "OffenceAlert",
            lambda s: field(s, "observed_at")["type"].update(logicalType="timestamp-micros"),
            "OffenceAlert.observed_at: logical type changed",
        ),
        (
            "OffenceAlert",
            lambda s: field(s, "case_reference").update(type="string", default=""),
            "OffenceAlert.case_reference: type changed incompatibly from null to string",
        ),
        (
            "StatisticalIndicator",
            lambda s: field(s, "counts")["type"]["items"].update(name="Count"),
            "StatisticalIndicator.counts[]: record CategoryCount renamed to Count",
        ),
    ],
)
def test_incompatible_changes_are_caught(
    schemas: Path, name: str, change: Edit, expected: str
) -> None:
    """Type changes, removed enum symbols, resized fixed, logical types, renames are refused."""
    edit(schemas, name, change)
    problems, _ = run_check(schemas)
    assert any(p.startswith(f"release 1: {expected}") for p in problems), problems


def test_removed_record_is_caught(schemas: Path) -> None:
    """Deleting a released schema fails: its data could no longer be read."""
    (schemas / "PseudonymResponse.avsc").unlink()
    problems, _ = run_check(schemas)
    assert problems == ["release 1: PseudonymResponse was removed; its data can no longer be read"]


def test_enum_symbol_removed_with_a_default_is_compatible(schemas: Path) -> None:
    """OffenceCategory has default OTHER, so dropping a symbol is allowed (read as OTHER)."""
    edit(schemas, "OffenceCategory", lambda s: s["symbols"].remove("IDENTITY_THEFT"))
    assert run_check(schemas)[0] == []


def test_missing_doc_is_named(schemas: Path) -> None:
    """A field or a named type without doc fails the check, naming it."""
    edit(schemas, "TrustList", lambda s: field(s, "version").pop("doc"))
    edit(schemas, "Uuid", lambda s: s.pop("doc"))
    problems, _ = run_check(schemas)
    assert "TrustList.version: field has no doc" in problems
    assert "Uuid: fixed has no doc" in problems


def test_compatible_evolution_passes_and_old_data_still_decodes(schemas: Path) -> None:
    """A field added with a default passes; a v1 record decodes with the default filled in."""
    edit(
        schemas,
        "PseudonymQuery",
        lambda s: s["fields"].append(
            {
                "name": "urgent",
                "type": "boolean",
                "default": False,
                "doc": "Whether the asker needs an answer within the hour.",
            }
        ),
    )
    problems, new = run_check(schemas)
    assert problems == []
    old = codec.SchemaRegistry(schemas / "history" / "1")
    record = {
        "query_id": "0b8e7d6c-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
        "pseudonym": "darkvendor_99",
        "platform": "example-market",
        "category": "ILLICIT_DRUG_TRADE",
        "justification": "Linked to three seizures.",
        "requested_detail": "HIT_ONLY",
    }
    data = codec.encode("PseudonymQuery", record, registry=old)
    writer = new.by_fingerprint(data[2:10])
    assert writer.version == "1"
    assert new.current("PseudonymQuery").fingerprint != writer.fingerprint
    name, decoded = codec.decode(data, registry=new)
    assert name == "eu.ncp.exchange.PseudonymQuery"
    assert {k: decoded[k] for k in record} == record
    assert decoded["urgent"] is False
