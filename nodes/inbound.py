"""Local input -> outbox items: CLI options, JSONL files and inbound connectors' submissions.

Everything is validated before anything is enqueued: the payload (``exchange.models
.parse_payload``), the handling, the recipients (members of the trust list with a current
encryption key) and the topic. The item keeps the payload's Avro single-object encoding
(``payload_avro``), so the publisher signs it without validating it again. A JSONL file
is all or nothing: every problem of every line is reported (``line 3: payload.title:
...``) and none is enqueued.

JSONL: one object a line::

    {"message_type": "OffenceAlert",        # optional, this is the default
     "payload": {...},                       # the payload fields (alert_id may be omitted)
     "handling": {"tlp": "GREEN", "code": "H0", ...},
     "recipients": ["DE"],                   # optional; empty = every member
     "topic": "alerts",                      # optional; needed for a Retraction
     "key": "..."}                           # a Retraction: the retracted message's key
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from exchange.errors import ExchangeError, InputError
from exchange.ids import NodeId, Topic
from exchange.models import Handling, parse_payload, record_key
from exchange.seal import encode_payload
from exchange.topics import HOME_TOPIC, MessageType, TopicKind, allowed_on, topic_name
from exchange.trust import TrustList
from exchange.uuid7 import uuid7
from nodes.store.base import OutboxItem, OutboxStatus

Problems = list[tuple[str, str]]

#: Defaults for the handling when the input leaves them out: "cannot be judged".
DEFAULT_HANDLING: Mapping[str, Any] = {
    "tlp": "AMBER",
    "code": "H1",
    "restriction": None,
    "source_reliability": "X",
    "information_reliability": "FOUR",
}

_INFO_RELIABILITY = {"1": "ONE", "2": "TWO", "3": "THREE", "4": "FOUR"}


def normalise_handling(handling: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in; upper-case symbols; ``information_reliability`` 1-4 accepted."""
    out = {**DEFAULT_HANDLING, **{k: v for k, v in handling.items() if v is not None}}
    for name in ("tlp", "code", "source_reliability", "information_reliability"):
        if isinstance(out.get(name), str):
            out[name] = out[name].strip().upper().replace("TLP:", "").replace("+", "_")
    info = out.get("information_reliability")
    if isinstance(info, int | str) and str(info) in _INFO_RELIABILITY:
        out["information_reliability"] = _INFO_RELIABILITY[str(info)]
    return out


def _topic_for(
    message_type: MessageType, topic: str | None, prefix: str, problems: Problems, where: str
) -> Topic | None:
    if topic is None:
        kind = HOME_TOPIC.get(message_type)
        if kind is None:
            problems.append(
                (f"{where}topic", f"required for {message_type.value} (alerts, blacklist, ...)")
            )
            return None
        return topic_name(kind, prefix)
    try:
        full = topic_name(TopicKind(topic), prefix)
    except ValueError:
        full = Topic(topic)
    if not allowed_on(full, message_type, prefix):
        problems.append((f"{where}topic", f"{message_type.value} may not travel on {full}"))
        return None
    return full


def build_item(
    message_type: str,
    payload: Mapping[str, Any],
    *,
    handling: Mapping[str, Any],
    recipients: Sequence[str] = (),
    node: NodeId,
    prefix: str,
    trust: TrustList | None,
    now: datetime,
    topic: str | None = None,
    key: str | None = None,
    where: str = "",
) -> OutboxItem:
    """One validated PENDING outbox item; InputError listing every problem otherwise.

    ``where`` prefixes each problem's field (``"line 3: "``). Items are signed later, by
    the publisher.
    """
    problems: Problems = []
    try:
        kind = MessageType(message_type)
    except ValueError:
        known = ", ".join(m.value for m in MessageType)
        raise InputError(
            [(f"{where}message_type", f"unknown {message_type!r}; one of {known}")]
        ) from None
    data = dict(payload)
    if kind is MessageType.OFFENCE_ALERT and not data.get("alert_id"):
        data["alert_id"] = str(uuid.uuid4())
    model = None
    try:
        model = parse_payload(kind, data, now=now)
    except InputError as exc:
        problems.extend((f"{where}payload.{f}", r) for f, r in exc.problems)
    handling_model = None
    try:
        handling_model = Handling.model_validate(normalise_handling(handling))
    except ValidationError as exc:
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"]) or "handling"
            problems.append((f"{where}handling.{path}", err["msg"].removeprefix("Value error, ")))
    targets = [NodeId(r.strip().upper()) for r in recipients if r.strip()]
    for r in targets:
        if trust is None:
            break
        try:
            trust.encryption_key(r, now)
        except ExchangeError as exc:
            problems.append((f"{where}recipients", f"{r}: {exc.detail}"))
    if handling_model is not None and handling_model.tlp.value == "RED" and not targets:
        problems.append((f"{where}recipients", "TLP:RED needs named recipients (--to)"))
    full_topic = _topic_for(kind, topic, prefix, problems, where)
    natural_key = record_key(model, node) if model is not None else None
    if key and natural_key is not None and key != natural_key:
        problems.append(
            (f"{where}key", f"a {kind.value} travels under its own key {natural_key!r}")
        )
    record_key_ = key or natural_key
    if model is not None and not record_key_:
        problems.append(
            (f"{where}key", f"required for {kind.value}: the key of the retracted message")
        )
    if problems or model is None or handling_model is None or full_topic is None or not record_key_:
        raise InputError(problems)
    try:
        payload_avro = encode_payload(model)
    except ExchangeError as exc:
        raise InputError([(f"{where}payload", exc.detail)]) from None
    return OutboxItem(
        id=0,
        topic=full_topic,
        key=record_key_,
        message_type=kind.value,
        payload=model.model_dump(mode="json"),
        handling=handling_model.model_dump(mode="json"),
        recipients=tuple(targets),
        created_at=now,
        status=OutboxStatus.PENDING,
        message_id=uuid7(now),
        payload_avro=payload_avro,
    )


def items_from_jsonl(
    path: Path, *, node: NodeId, prefix: str, trust: TrustList | None, now: datetime
) -> list[OutboxItem]:
    """Each line of ``path`` as an outbox item, or InputError listing every problem of each line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([("jsonl", f"cannot read {path}: {exc}")]) from None
    items: list[OutboxItem] = []
    problems: Problems = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {number}: "
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append((f"{where}json", f"not JSON: {exc.msg}"))
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("payload"), dict):
            problems.append((f"{where}payload", "each line is an object with a 'payload' object"))
            continue
        recipients = entry.get("recipients") or []
        if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
            problems.append((f"{where}recipients", "must be a list of node ids"))
            continue
        try:
            items.append(
                build_item(
                    str(entry.get("message_type") or MessageType.OFFENCE_ALERT.value),
                    entry["payload"],
                    handling=entry.get("handling") or {},
                    recipients=recipients,
                    node=node,
                    prefix=prefix,
                    trust=trust,
                    now=now,
                    topic=entry.get("topic"),
                    key=entry.get("key"),
                    where=where,
                )
            )
        except InputError as exc:
            problems.extend(exc.problems)
    if problems:
        raise InputError(problems)
    if not items:
        raise InputError([("jsonl", f"{path} holds no messages")])
    return items


def split_pair(value: str, option: str) -> tuple[str, str]:
    """``"ALG:HEX"`` -> ("ALG", "HEX"); InputError naming ``option`` otherwise."""
    head, sep, tail = value.partition(":")
    if not sep or not head or not tail:
        raise InputError([(option, f"expected PREFIX:VALUE, got {value!r}")])
    return head, tail


def alert_payload(options: Mapping[str, Any], *, node: NodeId, now: datetime) -> dict[str, Any]:
    """An OffenceAlert payload dict from CLI options (validated later by :func:`build_item`)."""
    indicators: list[dict[str, Any]] = []
    simple = {"url": "URL", "domain": "DOMAIN", "ip": "IP_ADDRESS", "email": "EMAIL"}
    for option, kind in simple.items():
        for value in options.get(option) or ():
            indicators.append({"type": kind, "value": value})
    problems: Problems = []
    pairs = {
        "hash": ("FILE_HASH", "hash_algorithm"),
        "wallet": ("CRYPTO_WALLET", "currency"),
        "handle": ("ONLINE_HANDLE", "platform"),
    }
    for option, (kind, qualifier) in pairs.items():
        for value in options.get(option) or ():
            try:
                head, tail = split_pair(value, f"--{option}")
            except InputError as exc:
                problems.extend(exc.problems)
                continue
            if option == "hash":
                head = head.upper().replace("-", "")
            indicators.append({"type": kind, "value": tail, qualifier: head})
    if problems:
        raise InputError(problems)
    observed = options.get("observed_at")
    return {
        "alert_id": options.get("alert_id") or str(uuid.uuid4()),
        "title": options.get("title"),
        "category": (options.get("category") or "").upper() or None,
        "observed_at": observed or now.isoformat(),
        "indicators": indicators,
        "description": options.get("description") or "",
        "reporting_source": (options.get("source") or "LAW_ENFORCEMENT").upper(),
        "language": options.get("language") or "en",
        "country_of_origin": options.get("country") or node,
        "case_reference": options.get("case_reference"),
    }
