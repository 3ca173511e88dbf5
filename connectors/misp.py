"""MISP event JSON <-> alerts: the pure mapping both ways.

Export (:func:`alert_event`): one OffenceAlert is one MISP event ``{"Event": {...}}``. The
event's ``uuid`` is the alert id, ``info`` its title, ``date`` the day it was observed and
``Orgc`` the sender (``NCP <node>``). Indicators become attributes (URL ``url``, DOMAIN
``domain``, IP_ADDRESS ``ip-dst``, EMAIL ``email``, FILE_HASH ``md5``/``sha1``/``sha256``/
``sha512``), each with ``first_seen`` = observed_at, ``to_ids`` set; a wallet becomes a
``coin-address`` object (``address``, ``address-xmr`` or ``address-crypto``, and ``symbol``),
a handle a ``user-account`` object (``username``, ``account-type``). The description and the
case reference are ``comment`` / ``text`` attributes whose comment is ``ncp:description`` /
``ncp:case-reference``. Tags carry the handling: ``tlp:amber`` (TLP 2.0 taxonomy),
``ncp:handling-code="H1"``, and the rest: ``ncp:category="..."``,
``ncp:reporting-source="..."``, ``ncp:country-of-origin="FR"``, ``ncp:language="fr"``.

Import (:func:`event_to_alert`) reads the same, and also what other MISP instances write:
``ip-src``, ``hostname``, ``link``, ``email-src``/``email-dst``, ``btc``, ``xmr``, TLP 1.0's
``tlp:white``, and ``admiralty-scale`` tags for the 4x4 grades. An attribute of another type is
refused by its uuid with the reason, and the event is imported without it; an event with no
indicator left is refused whole.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.api import SharedRecord
from exchange.errors import InputError
from exchange.models import parse_payload
from exchange.topics import MessageType

__all__ = ["EventImport", "alert_event", "event_to_alert"]

NAMESPACE = uuid.UUID("0e7b8e8c-3c9f-4b7e-a1f2-6d5c4b3a2918")
HASH_TYPES = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}
SIMPLE_TYPES = {"URL": "url", "DOMAIN": "domain", "IP_ADDRESS": "ip-dst", "EMAIL": "email"}
_CATEGORY = {
    "url": "Network activity",
    "domain": "Network activity",
    "ip-dst": "Network activity",
    "email": "Social network",
}
_IMPORT_TYPES = {
    "url": "URL",
    "link": "URL",
    "domain": "DOMAIN",
    "hostname": "DOMAIN",
    "ip-dst": "IP_ADDRESS",
    "ip-src": "IP_ADDRESS",
    "email": "EMAIL",
    "email-src": "EMAIL",
    "email-dst": "EMAIL",
}
_HASH_BACK = {v: k for k, v in HASH_TYPES.items()}
#: MISP TLP tags (TLP 2.0 taxonomy, and TLP 1.0's white) <-> our Tlp values.
TLP_TAGS = {
    "CLEAR": "tlp:clear",
    "GREEN": "tlp:green",
    "AMBER": "tlp:amber",
    "AMBER_STRICT": "tlp:amber+strict",
    "RED": "tlp:red",
}
_TLP_BACK = {**{v: k for k, v in TLP_TAGS.items()}, "tlp:white": "CLEAR"}
_MACHINE_TAG = re.compile(r'^([a-z0-9-]+):([a-z0-9-]+)="(.*)"$', re.IGNORECASE)
_SOURCE = {"a": "A", "b": "B", "c": "C", "d": "X", "e": "X", "f": "X"}
_INFO = {"1": "ONE", "2": "TWO", "3": "THREE", "4": "FOUR", "5": "FOUR", "6": "FOUR"}


def _attribute(alert_id: str, n: int, kind: str, value: str, **extra: Any) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid5(NAMESPACE, f"{alert_id}:{n}:{kind}:{value}")),
        "type": kind,
        "value": value,
        "distribution": "5",  # inherit the event's
        **extra,
    }


def alert_event(record: SharedRecord) -> dict[str, Any]:
    """One stored OffenceAlert as a MISP event (``{"Event": ...}``, MISP's JSON format)."""
    p = record.payload
    alert_id = str(p["alert_id"])
    observed = datetime.fromisoformat(str(p["observed_at"]))
    seen = observed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    attributes: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    for n, ind in enumerate(p.get("indicators") or ()):
        kind, value = ind["type"], str(ind["value"])
        if kind in SIMPLE_TYPES or kind == "FILE_HASH":
            misp = SIMPLE_TYPES.get(kind) or HASH_TYPES[str(ind["hash_algorithm"])]
            category = _CATEGORY.get(misp, "Payload delivery")
            attributes.append(
                _attribute(
                    alert_id, n, misp, value, category=category, to_ids=True, first_seen=seen
                )
            )
        elif kind == "CRYPTO_WALLET":
            currency = str(ind["currency"])
            relation = {"BTC": "address", "XMR": "address-xmr"}.get(currency, "address-crypto")
            misp = {"address": "btc", "address-xmr": "xmr"}.get(relation, "text")
            parts = [(relation, misp, value), ("symbol", "text", currency)]
            objects.append(_object(alert_id, n, "coin-address", "financial", parts, seen))
        elif kind == "ONLINE_HANDLE":
            parts = [("username", "text", value), ("account-type", "text", str(ind["platform"]))]
            objects.append(_object(alert_id, n, "user-account", "misc", parts, seen))
    attributes.append(
        _attribute(
            alert_id, -1, "comment", str(p.get("description") or p.get("title")),
            category="Other", to_ids=False, comment="ncp:description",
        )
    )  # fmt: skip
    if p.get("case_reference"):
        attributes.append(
            _attribute(
                alert_id, -2, "text", str(p["case_reference"]),
                category="Internal reference", to_ids=False, comment="ncp:case-reference",
            )
        )  # fmt: skip
    tags = [TLP_TAGS[record.tlp], f'ncp:handling-code="{record.handling_code}"']
    for key in ("category", "reporting_source", "country_of_origin", "language"):
        if p.get(key):
            tags.append(f'ncp:{key.replace("_", "-")}="{p[key]}"')
    return {
        "Event": {
            "uuid": alert_id,
            "info": str(p.get("title")),
            "date": observed.date().isoformat(),
            "timestamp": str(int(record.created_at.timestamp())),
            "published": False,
            "analysis": "2",
            "threat_level_id": "2",
            "distribution": "0" if record.tlp in ("RED", "AMBER_STRICT") else "1",
            "Orgc": {"name": f"NCP {record.sender}"},
            "Tag": [{"name": t} for t in tags],
            "Attribute": attributes,
            "Object": objects,
        }
    }


def _object(
    alert_id: str, n: int, name: str, meta: str, parts: Sequence[tuple[str, str, str]], seen: str
) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid5(NAMESPACE, f"{alert_id}:{n}:{name}")),
        "name": name,
        "meta-category": meta,
        "distribution": "5",
        "Attribute": [
            _attribute(
                alert_id, n, kind, value, object_relation=relation, category="Other",
                to_ids=relation not in ("symbol", "account-type"), first_seen=seen,
            )
            for relation, kind, value in parts
        ],
    }  # fmt: skip


# --- import ----------------------------------------------------------------------------------


@dataclass
class EventImport:
    """An event's alert (payload and handling), and what in it was refused (uuid, reason)."""

    payload: dict[str, Any] | None = None
    handling: dict[str, Any] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)


def _tags(items: Any) -> list[str]:
    return [str(t.get("name")) for t in items or () if isinstance(t, Mapping) and t.get("name")]


def _indicator(attr: Mapping[str, Any]) -> dict[str, Any] | None:
    """The alert indicator of a flat attribute; None for context; ValueError when refused."""
    kind, value = str(attr.get("type")), str(attr.get("value", ""))
    if kind in _IMPORT_TYPES:
        return {"type": _IMPORT_TYPES[kind], "value": value}
    if kind in _HASH_BACK:
        return {"type": "FILE_HASH", "hash_algorithm": _HASH_BACK[kind], "value": value}
    if kind in ("btc", "xmr"):
        return {"type": "CRYPTO_WALLET", "currency": kind.upper(), "value": value}
    if kind in ("comment", "text"):
        return None
    raise ValueError(f"attribute type {kind!r} has no alert indicator type")


def _from_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    parts = {str(a.get("object_relation")): str(a.get("value")) for a in obj.get("Attribute") or ()}
    name = obj.get("name")
    if name == "coin-address":
        address = parts.get("address") or parts.get("address-xmr") or parts.get("address-crypto")
        currency = parts.get("symbol") or ("XMR" if "address-xmr" in parts else "BTC")
        if address:
            return {"type": "CRYPTO_WALLET", "currency": currency.upper(), "value": address}
    if name == "user-account" and parts.get("username") and parts.get("account-type"):
        return {
            "type": "ONLINE_HANDLE",
            "platform": parts["account-type"],
            "value": parts["username"],
        }
    raise ValueError(f"a MISP {name!r} object has no alert indicator type (needs its key parts)")


def event_to_alert(
    event: Mapping[str, Any], *, country_of_origin: str, now: datetime
) -> EventImport:
    """The alert a MISP event (``{"Event": ...}`` or the event itself) states."""
    ev = event.get("Event", event)
    out = EventImport()
    indicators: list[dict[str, Any]] = []
    description = case = None
    firsts: list[str] = []
    for attr in ev.get("Attribute") or ():
        note = attr.get("comment")
        if note == "ncp:description":
            description = str(attr.get("value"))
        elif note == "ncp:case-reference":
            case = str(attr.get("value"))
        try:
            found = _indicator(attr)
        except ValueError as exc:
            out.refused.append((str(attr.get("uuid")), str(exc)))
            continue
        if found is not None:
            indicators.append(found)
            firsts.extend([str(attr["first_seen"])] if attr.get("first_seen") else [])
    for obj in ev.get("Object") or ():
        try:
            indicators.append(_from_object(obj))
        except ValueError as exc:
            out.refused.append((str(obj.get("uuid")), str(exc)))
    tags = _tags(ev.get("Tag"))
    machine = {}
    for tag in tags:
        m = _MACHINE_TAG.match(tag)
        if m:
            machine[f"{m.group(1).lower()}:{m.group(2).lower()}"] = m.group(3)
    tlp = next((_TLP_BACK[t.lower()] for t in tags if t.lower() in _TLP_BACK), "AMBER")
    observed = min(firsts) if firsts else f"{ev.get('date')}T00:00:00+00:00"
    payload = {
        "alert_id": str(ev.get("uuid") or uuid.uuid4()),
        "title": str(ev.get("info") or "")[:300],
        "category": machine.get("ncp:category", "OTHER"),
        "observed_at": observed,
        "indicators": indicators,
        "description": description or str(ev.get("info") or ""),
        "reporting_source": machine.get("ncp:reporting-source", "OTHER"),
        "language": machine.get("ncp:language", "en"),
        "country_of_origin": machine.get("ncp:country-of-origin", country_of_origin),
        "case_reference": case,
    }
    where = f"event {payload['alert_id']}"
    try:
        parse_payload(MessageType.OFFENCE_ALERT, payload, now=now)
    except InputError as exc:
        out.refused.append((where, "; ".join(f"{f}: {r}" for f, r in exc.problems)))
        return out
    code = machine.get("ncp:handling-code", "H1")
    if code == "H3":
        out.refused.append((where, "handling code H3 needs a restriction; MISP tags carry none"))
        return out
    out.payload = payload
    out.handling = {
        "tlp": tlp,
        "code": code,
        "source_reliability": _SOURCE.get(
            machine.get("admiralty-scale:source-reliability", ""), "X"
        ),
        "information_reliability": _INFO.get(
            machine.get("admiralty-scale:information-credibility", ""), "FOUR"
        ),
    }
    return out
