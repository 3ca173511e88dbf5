"""Payload models (pydantic v2) and their mapping to the Avro records in ``schemas/``.

One module per message family; this package re-exports them and holds the
functions callers use: :func:`payload_type`, :func:`record_key`, :func:`to_avro`,
:func:`from_avro` (wire, hot path), :func:`parse_payload` (local input),
:func:`encode_payload` / :func:`decode_payload` (codec + model).

Time checks ("not in the future beyond MAX_SKEW") need ``now``: :func:`parse_payload`
and :func:`decode_payload` require it, :func:`from_avro` applies it when given.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from exchange import codec
from exchange.errors import InputError, Reason, WireError
from exchange.ids import NodeId
from exchange.models.alert import Indicator, OffenceAlert
from exchange.models.blacklist import (
    BlacklistDelta,
    BlacklistEntry,
    BlacklistEntryKind,
    BlacklistRemoval,
)
from exchange.models.common import (
    LINE_PATTERN,
    LINE_REASON,
    MAX_SKEW,
    Handling,
    HandlingCode,
    HashAlgorithm,
    IndicatorType,
    InformationReliability,
    Model,
    OffenceCategory,
    ReportingSource,
    SourceReliability,
    Tlp,
)
from exchange.models.indicator import (
    CategoryCount,
    IndicatorMeasure,
    MeasureCount,
    StatisticalIndicator,
)
from exchange.models.pseudonym import PseudonymQuery, PseudonymResponse, RequestedDetail
from exchange.models.retraction import Retraction, RetractionReason
from exchange.topics import MessageType

Payload = (
    OffenceAlert
    | BlacklistDelta
    | PseudonymQuery
    | PseudonymResponse
    | StatisticalIndicator
    | Retraction
)

MODELS: dict[MessageType, type[Model]] = {
    MessageType.OFFENCE_ALERT: OffenceAlert,
    MessageType.BLACKLIST_DELTA: BlacklistDelta,
    MessageType.PSEUDONYM_QUERY: PseudonymQuery,
    MessageType.PSEUDONYM_RESPONSE: PseudonymResponse,
    MessageType.STATISTICAL_INDICATOR: StatisticalIndicator,
    MessageType.RETRACTION: Retraction,
}
_TYPES: dict[type[Model], MessageType] = {cls: mt for mt, cls in MODELS.items()}


def payload_type(p: Payload) -> MessageType:
    """The message type of a payload (equal to its Avro record name)."""
    return _TYPES[type(p)]


def record_key(p: Payload, sender: NodeId) -> str | None:
    """The Kafka record key the architecture fixes for the payload.

    Alert: alert_id; blacklist delta: list_id; pseudonym query and response: query_id;
    statistical indicator: ``f"{sender}:{period_start:%Y-%m-%d}"``. A Retraction has no
    key of its own (None): it travels under the key of the message it retracts, which
    the caller passes to ``seal(key=...)``.
    """
    if isinstance(p, OffenceAlert):
        return str(p.alert_id)
    if isinstance(p, BlacklistDelta):
        return p.list_id
    if isinstance(p, PseudonymQuery | PseudonymResponse):
        return str(p.query_id)
    if isinstance(p, StatisticalIndicator):
        return f"{sender}:{p.period_start:%Y-%m-%d}"
    return None


def to_avro(p: Payload) -> dict[str, Any]:
    """The payload as a dict for the Avro record of the same name."""
    return p.to_avro()


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(record)"


def _reason(err: Any) -> str:
    """An error's reason in words; a compiled constraint's message says what it means."""
    if err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == (
        LINE_PATTERN
    ):
        return LINE_REASON
    return str(err["msg"]).removeprefix("Value error, ")


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    return [(_path(err["loc"]), _reason(err)) for err in exc.errors(include_url=False)]


def from_avro(
    message_type: MessageType, d: Mapping[str, Any], *, now: datetime | None = None
) -> Payload:
    """Validate a decoded Avro record into its model.

    Raises WireError(INVALID_PAYLOAD) naming the first offending field (dotted path);
    ``detail`` lists every problem.
    """
    cls = MODELS[message_type]
    try:
        model = cls.model_validate(d, context={"now": now} if now is not None else None)
    except ValidationError as exc:
        (field, reason), *more = _problems(exc)
        also = "".join(f"; {f}: {r}" for f, r in more)
        raise WireError(Reason.INVALID_PAYLOAD, reason + also, field=field) from None
    except Exception as exc:  # a validator tripping on hostile input must not escape
        raise WireError(
            Reason.INVALID_PAYLOAD, f"{message_type} refused: {type(exc).__name__}: {exc}"
        ) from None
    return model  # type: ignore[return-value]


def parse_payload(message_type: MessageType, data: Any, *, now: datetime) -> Payload:
    """Validate local input (CLI, JSONL, connectors) into a payload.

    Raises InputError listing every (field path, reason).
    """
    if not isinstance(data, Mapping):
        raise InputError([("(record)", f"a {message_type} must be a JSON object")])
    try:
        model = MODELS[message_type].model_validate(data, context={"now": now})
    except ValidationError as exc:
        raise InputError(_problems(exc)) from None
    except Exception as exc:  # a validator tripping on odd input must not escape
        raise InputError([("(record)", f"{type(exc).__name__}: {exc}")]) from None
    return model  # type: ignore[return-value]


def encode_payload(p: Payload) -> bytes:
    """The single-object encoding of a payload with its current schema."""
    return codec.encode(payload_type(p).value, to_avro(p))


def decode_payload(
    data: bytes, *, now: datetime | None, expected: MessageType | None = None
) -> Payload:
    """Decode and validate payload bytes (codec + model); only WireError escapes."""
    name, record = codec.decode(data, expected.value if expected is not None else None)
    try:
        message_type = MessageType(name.rpartition(".")[2])
    except ValueError:
        raise WireError(Reason.MALFORMED, f"{name} is not a payload record") from None
    return from_avro(message_type, record, now=now)


__all__ = [
    "MAX_SKEW",
    "MODELS",
    "BlacklistDelta",
    "BlacklistEntry",
    "BlacklistEntryKind",
    "BlacklistRemoval",
    "CategoryCount",
    "Handling",
    "HandlingCode",
    "HashAlgorithm",
    "Indicator",
    "IndicatorMeasure",
    "IndicatorType",
    "InformationReliability",
    "MeasureCount",
    "OffenceAlert",
    "OffenceCategory",
    "Payload",
    "PseudonymQuery",
    "PseudonymResponse",
    "ReportingSource",
    "RequestedDetail",
    "Retraction",
    "RetractionReason",
    "SourceReliability",
    "StatisticalIndicator",
    "Tlp",
    "decode_payload",
    "encode_payload",
    "from_avro",
    "parse_payload",
    "payload_type",
    "record_key",
    "to_avro",
]
