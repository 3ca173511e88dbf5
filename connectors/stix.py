"""STIX 2.1 <-> alerts: the pure mapping both ways (built with the ``stix2`` library).

Export (:func:`alert_objects`, :func:`alert_bundle`) turns one stored OffenceAlert into:

- an ``identity`` for the sender (``NCP <node>``, an id derived from the node id);
- the TLP 2.0 ``marking-definition`` of its TLP (FIRST's fixed ids, with the
  ``tlp_2_0`` property extension) and a ``statement`` marking for its Europol handling
  code (ids derived from the code);
- one ``indicator`` per alert indicator, its pattern from :mod:`connectors.stix_patterns`;
- a ``report`` whose id is ``report--<alert_id>``, named by the title, describing it, and
  referring to the indicators. Category, reporting source, country of origin (and, on
  import, the 4x4 grades) travel as ``labels`` (``ncp-category:FRAUDULENT_SALES``), the
  language as ``lang`` and the case reference as an external reference.

Import (:func:`objects_to_alerts`) reads a list of STIX objects: each ``report`` with the
indicators it names becomes one alert (``alert_id`` from the report's id), each indicator
named by no report becomes one alert of its own. Every object that cannot be imported is
refused by id with the reason; what the labels do not say comes from :class:`Defaults`.
Markings: TLP 2.0 and TLP 1.0 definitions set the TLP, the handling statements set the code.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stix2

from connectors.api import SharedRecord
from connectors.stix_patterns import PatternRefused, indicators_from_pattern, pattern_for
from exchange.errors import InputError
from exchange.models import parse_payload
from exchange.topics import MessageType

__all__ = [
    "Defaults",
    "ImportResult",
    "ImportedAlert",
    "alert_bundle",
    "alert_objects",
    "objects_to_alerts",
]

#: Namespace of the ids this mapping derives (identities, handling statements, indicators).
NAMESPACE = uuid.UUID("5f1c2a3e-8d7b-4c1e-9a6f-3b2d1e0c9a87")
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
_FIRST = "identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01"
#: TLP 2.0 marking definitions (FIRST / OASIS fixed ids) by our Tlp value.
TLP2_IDS: dict[str, str] = {
    "CLEAR": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "GREEN": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "AMBER": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "AMBER_STRICT": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "RED": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
#: TLP 1.0 ids (stix2's TLP_WHITE ...), accepted on import.
TLP1_IDS: dict[str, str] = {
    stix2.TLP_WHITE.id: "CLEAR",
    stix2.TLP_GREEN.id: "GREEN",
    stix2.TLP_AMBER.id: "AMBER",
    stix2.TLP_RED.id: "RED",
}
HANDLING_TEXT = {
    "H0": "no restriction",
    "H1": "not to be used as evidence in judicial proceedings",
    "H2": "not to be disseminated without the originator's permission",
    "H3": "other restriction, stated by the originator",
}


def _tlp_marking(tlp: str) -> stix2.v21.MarkingDefinition:
    label = tlp.replace("_", "+")
    return stix2.v21.MarkingDefinition(
        id=TLP2_IDS[tlp],
        created="2022-10-01T00:00:00.000Z",
        created_by_ref=_FIRST,
        name=f"TLP:{label}",
        extensions={
            TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": label.lower()}
        },
    )


def handling_id(code: str) -> str:
    return f"marking-definition--{uuid.uuid5(NAMESPACE, f'handling:{code}')}"


def _handling_marking(code: str) -> stix2.v21.MarkingDefinition:
    return stix2.v21.MarkingDefinition(
        id=handling_id(code),
        created=_EPOCH,
        name=f"Europol handling code {code}",
        definition_type="statement",
        definition={"statement": f"Europol handling code {code}: {HANDLING_TEXT[code]}"},
    )


def _json(obj: Any) -> dict[str, Any]:
    return dict(json.loads(obj.serialize()))


#: The fixed markings, built once (JSON).
TLP_MARKINGS = {tlp: _json(_tlp_marking(tlp)) for tlp in TLP2_IDS}
HANDLING_MARKINGS = {code: _json(_handling_marking(code)) for code in HANDLING_TEXT}
_HANDLING_BACK = {m["id"]: code for code, m in HANDLING_MARKINGS.items()}


def sender_identity(sender: str) -> dict[str, Any]:
    """The identity of a member's node (same id and version for every alert it sends)."""
    return _json(
        stix2.v21.Identity(
            id=f"identity--{uuid.uuid5(NAMESPACE, f'identity:{sender}')}",
            created=_EPOCH,
            modified=_EPOCH,
            name=f"NCP {sender}",
            identity_class="organization",
            sectors=["government-public-services"],
        )
    )


def _labels(payload: Mapping[str, Any]) -> list[str]:
    pairs = [
        ("category", payload.get("category")),
        ("reporting-source", payload.get("reporting_source")),
        ("country-of-origin", payload.get("country_of_origin")),
    ]
    return [f"ncp-{k}:{v}" for k, v in pairs if v]


def alert_objects(record: SharedRecord) -> list[dict[str, Any]]:
    """The STIX objects of one OffenceAlert (identity, markings, indicators, report), as JSON."""
    payload = record.payload
    alert_id = str(payload["alert_id"])
    identity = sender_identity(record.sender)
    markings = [TLP_MARKINGS[record.tlp], HANDLING_MARKINGS[record.handling_code]]
    refs = [m["id"] for m in markings]
    labels = _labels(payload)
    lang = payload.get("language") or "en"
    common: dict[str, Any] = {
        "created": record.created_at,
        "modified": record.created_at,
        "created_by_ref": identity["id"],
        "object_marking_refs": refs,
        "lang": lang,
    }
    if labels:
        common["labels"] = labels
    indicators = []
    title = str(payload.get("title") or f"alert {alert_id}")
    for i, ind in enumerate(payload.get("indicators") or ()):
        sid = uuid.uuid5(NAMESPACE, f"{alert_id}:{i}:{ind['type']}:{ind['value']}")
        indicators.append(
            stix2.v21.Indicator(
                id=f"indicator--{sid}",
                name=title,
                description=f"{ind['type']} of alert {alert_id}",
                pattern=pattern_for(ind),
                pattern_type="stix",
                indicator_types=["malicious-activity"],
                valid_from=payload.get("observed_at") or record.created_at,
                **common,
            )
        )
    extra: dict[str, Any] = {}
    if payload.get("case_reference"):
        extra["external_references"] = [
            {"source_name": "ncp-case-reference", "external_id": payload["case_reference"]}
        ]
    report = stix2.v21.Report(
        id=f"report--{alert_id}",
        name=title,
        description=str(payload.get("description") or title),
        published=payload.get("observed_at") or record.created_at,
        report_types=["threat-report"],
        object_refs=[x.id for x in indicators],
        **common,
        **extra,
    )
    return [identity, *markings, *(_json(x) for x in indicators), _json(report)]


def alert_bundle(record: SharedRecord) -> dict[str, Any]:
    """One STIX 2.1 bundle holding :func:`alert_objects` (its id derived from the message id)."""
    return {
        "type": "bundle",
        "id": f"bundle--{uuid.uuid5(NAMESPACE, str(record.message_id))}",
        "objects": alert_objects(record),
    }


# --- import ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Defaults:
    """What an imported alert gets when its STIX objects do not say."""

    country_of_origin: str
    category: str = "OTHER"
    reporting_source: str = "OTHER"
    language: str = "en"
    handling_code: str = "H1"
    tlp: str = "AMBER"


@dataclass(frozen=True)
class ImportedAlert:
    source: str  # the STIX id it came from (report or indicator)
    payload: dict[str, Any]
    handling: dict[str, Any]


@dataclass
class ImportResult:
    alerts: list[ImportedAlert] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (STIX id, reason)
    context: list[str] = field(default_factory=list)  # identities, markings: read, not alerts


def _label_map(obj: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for label in obj.get("labels") or ():
        if isinstance(label, str) and label.startswith("ncp-") and ":" in label:
            key, _, value = label[4:].partition(":")
            out[key] = value
    return out


def _handling(obj: Mapping[str, Any], labels: Mapping[str, str], d: Defaults) -> dict[str, Any]:
    tlp, code = d.tlp, d.handling_code
    by_id = {v: k for k, v in TLP2_IDS.items()}
    for ref in obj.get("object_marking_refs") or ():
        tlp = by_id.get(ref) or TLP1_IDS.get(ref) or tlp
        code = _HANDLING_BACK.get(ref, code)
    if code == "H3":
        raise ValueError("handling code H3 needs a restriction, which STIX markings do not carry")
    return {
        "tlp": tlp,
        "code": code,
        "source_reliability": labels.get("source-reliability", "X"),
        "information_reliability": labels.get("information-reliability", "FOUR"),
    }


def _alert_id(stix_id: str) -> str:
    tail = stix_id.partition("--")[2]
    try:
        return str(uuid.UUID(tail))
    except ValueError:
        return str(uuid.uuid5(NAMESPACE, stix_id))


def _one(
    head: Mapping[str, Any],
    indicators: Sequence[Mapping[str, Any]],
    d: Defaults,
    now: datetime,
) -> ImportedAlert:
    """One alert from a report (or lone indicator) ``head`` and its indicators; ValueError."""
    found: list[dict[str, Any]] = []
    for ind in indicators:
        if ind.get("pattern_type", "stix") != "stix":
            raise ValueError(f"{ind.get('id')}: pattern_type {ind.get('pattern_type')!r}")
        try:
            found.extend(indicators_from_pattern(str(ind.get("pattern", ""))))
        except PatternRefused as exc:
            raise ValueError(f"{ind.get('id')}: {exc}") from None
    labels = _label_map(head)
    title = str(head.get("name") or (indicators[0].get("pattern") if indicators else ""))[:300]
    refs = head.get("external_references") or ()
    case = [r.get("external_id") for r in refs if r.get("source_name") == "ncp-case-reference"]
    observed = head.get("published") or head.get("valid_from") or head.get("created")
    payload = {
        "alert_id": _alert_id(str(head.get("id", ""))),
        "title": title,
        "category": labels.get("category", d.category),
        "observed_at": observed,
        "indicators": found,
        "description": str(head.get("description") or title),
        "reporting_source": labels.get("reporting-source", d.reporting_source),
        "language": head.get("lang") or d.language,
        "country_of_origin": labels.get("country-of-origin", d.country_of_origin),
        "case_reference": case[0] if case else None,
    }
    try:
        parse_payload(MessageType.OFFENCE_ALERT, payload, now=now)
    except InputError as exc:
        raise ValueError("; ".join(f"{f}: {r}" for f, r in exc.problems)) from None
    return ImportedAlert(str(head.get("id")), payload, _handling(head, labels, d))


def objects_to_alerts(objects: Sequence[Any], defaults: Defaults, *, now: datetime) -> ImportResult:
    """The alerts that ``objects`` (STIX 2.1 JSON objects) state; each object that cannot be
    imported is refused with its id and the reason, and refuses nothing else."""
    result = ImportResult()
    by_id: dict[str, Mapping[str, Any]] = {}
    for i, obj in enumerate(objects):
        if not isinstance(obj, Mapping) or not isinstance(obj.get("id"), str):
            result.refused.append((f"objects[{i}]", "not a STIX object with an id"))
            continue
        by_id[obj["id"]] = obj
    named: set[str] = set()
    for sid, obj in by_id.items():
        if obj.get("type") == "report":
            refs = [r for r in obj.get("object_refs") or () if r.startswith("indicator--")]
            missing = [r for r in refs if r not in by_id]
            named.update(refs)
            if missing or not refs:
                why = f"indicators {missing} are not in the same envelope" if missing else ""
                result.refused.append((sid, why or "a report without indicators"))
                continue
            _add(result, obj, [by_id[r] for r in refs], defaults, now)
    for sid, obj in by_id.items():
        kind = obj.get("type")
        if kind == "indicator":
            if sid not in named:
                _add(result, obj, [obj], defaults, now)
        elif kind in ("identity", "marking-definition", "extension-definition"):
            result.context.append(sid)
        elif kind != "report":
            result.refused.append((sid, f"a {kind} is not imported (only indicators, reports)"))
    return result


def _add(
    result: ImportResult,
    head: Mapping[str, Any],
    indicators: Sequence[Mapping[str, Any]],
    defaults: Defaults,
    now: datetime,
) -> None:
    try:
        result.alerts.append(_one(head, indicators, defaults, now))
    except ValueError as exc:
        result.refused.append((str(head["id"]), str(exc)))
