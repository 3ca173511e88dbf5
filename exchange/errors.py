"""One root error for the protocol, with a stable reason code and a retry flag.

Callers branch on ``error.reason`` (a :class:`Reason`, stable across releases:
it is written to quarantine tables and audit reports) and on
``error.retriable`` (the consume loop retries a retriable error and
quarantines the record for any other). No exception from fastavro,
cryptography, PyNaCl or pydantic escapes the ``exchange`` API: each is caught
at the edge and re-raised as an :class:`ExchangeError`.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a record, document or input was refused. Values are stable wire/report codes."""

    # bytes and schemas
    MALFORMED = "malformed"
    UNKNOWN_SCHEMA = "unknown_schema"
    INVALID_PAYLOAD = "invalid_payload"
    #: a fetched batch that fails its CRC or does not decompress (exchange.fetchguard)
    UNDECODABLE_BATCH = "undecodable_batch"
    #: a record over the receiver's size cap, refused before any decoding
    TOO_LARGE = "too_large"
    # signatures and keys
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    KEY_NOT_VALID_AT_TIME = "key_not_valid_at_time"
    REVOKED_KEY = "revoked_key"
    SENDER_KEY_MISMATCH = "sender_key_mismatch"
    UNKNOWN_SENDER = "unknown_sender"
    # placement of a record on the bus
    WRONG_TOPIC = "wrong_topic"
    WRONG_KEY = "wrong_key"
    TYPE_NOT_ALLOWED = "type_not_allowed"
    # time (judged against the broker's append time, the federation's clock)
    FROM_THE_FUTURE = "from_the_future"
    BACKDATED = "backdated"
    ID_TIME_MISMATCH = "id_time_mismatch"
    NOT_APPEND_TIME = "not_append_time"
    # confidentiality
    NOT_A_RECIPIENT = "not_a_recipient"
    DECRYPTION_FAILED = "decryption_failed"
    # wire v2: the encrypted body is bound to its envelope
    BODY_NOT_BOUND = "body_not_bound"
    KEY_COMMITMENT_MISMATCH = "key_commitment_mismatch"
    WRAPPED_KEYS_MISMATCH = "wrapped_keys_mismatch"
    OBSOLETE_WIRE_VERSION = "obsolete_wire_version"
    # handling
    HANDLING_INCONSISTENT = "handling_inconsistent"
    # trust list
    BAD_TRUST_LIST = "bad_trust_list"
    TRUST_LIST_ROLLBACK = "trust_list_rollback"
    # receiving node
    REPLAYED = "replayed"
    #: verified under this node's own signing key, yet not a record this node sent
    NOT_IN_OWN_OUTBOX = "not_in_own_outbox"
    RULE_REJECTED = "rule_rejected"
    # configuration and local input
    BAD_CONFIG = "bad_config"
    BAD_INPUT = "bad_input"
    # transient
    UNAVAILABLE = "unavailable"


class ExchangeError(Exception):
    """The root of every error the exchange raises.

    ``field`` names the offending field (dotted path) when there is one;
    ``detail`` says why in words. ``retriable`` tells a consume loop to retry
    rather than quarantine.
    """

    retriable: bool = False

    def __init__(self, reason: Reason, detail: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.field = field
        where = f"{field}: " if field else ""
        super().__init__(f"{reason.value}: {where}{detail}")


class WireError(ExchangeError):
    """Bytes that do not decode: malformed, unknown schema, invalid payload."""


class VerificationError(ExchangeError):
    """A record that decodes but must not be trusted: signature, key, placement, time."""


class ConfidentialityError(ExchangeError):
    """A body this node may not or cannot read."""


class TrustListError(ExchangeError):
    """A trust list that does not verify or does not parse."""


class InputError(ExchangeError):
    """Local input (CLI options, JSONL, config) refused.

    ``problems`` lists each (field, reason).
    """

    def __init__(
        self, problems: list[tuple[str, str]], *, reason: Reason = Reason.BAD_INPUT
    ) -> None:
        self.problems = problems
        text = "; ".join(f"{f}: {r}" for f, r in problems)
        super().__init__(reason, text, field=problems[0][0] if problems else None)


class AuthenticationError(ExchangeError):
    """The Kafka cluster refused this client's credentials (SASL user, password or
    mechanism): ``BAD_CONFIG`` on field ``kafka``, never retried, since waiting does not
    fix a wrong password. Told apart from an unreachable cluster by exchange.authguard."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.BAD_CONFIG, detail, field="kafka")


class TransientError(ExchangeError):
    """The bus or the store is unavailable for now; try again."""

    retriable = True

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.UNAVAILABLE, detail)
