"""How to reach the federation's Kafka cluster, and the client arguments that follow from it.

:class:`KafkaSettings` (validated when built: plaintext, TLS, SASL/PLAIN or SCRAM, with or
without TLS; :func:`load_settings` names each bad field) and the keyword arguments it turns
into for aiokafka's clients: :func:`producer_kwargs` (idempotent, ``acks="all"``, large
batches), :func:`consumer_kwargs` (no auto-commit) and :func:`admin_kwargs`, with the TLS
context (:func:`ssl_context`) and the SASL password (:func:`sasl_password`). Pure settings:
it imports no Kafka client. :mod:`exchange.bus` re-exports every name.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from exchange.errors import InputError, Reason
from exchange.secretfile import read_secret

__all__ = [
    "KafkaSettings",
    "SaslMechanism",
    "SecurityProtocol",
    "TopicCompression",
    "admin_kwargs",
    "consumer_kwargs",
    "load_settings",
    "producer_kwargs",
    "sasl_password",
    "ssl_context",
]


class SecurityProtocol(StrEnum):
    """How clients talk to the brokers (Kafka's ``security.protocol``)."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class TopicCompression(StrEnum):
    """The ``compression.type`` federation topics are created with. ``producer`` keeps each
    batch as its producer compressed it (no recompression on the brokers); every codec is
    read by nodes and the auditor whichever is chosen."""

    PRODUCER = "producer"
    ZSTD = "zstd"
    LZ4 = "lz4"
    SNAPPY = "snappy"
    GZIP = "gzip"
    UNCOMPRESSED = "uncompressed"


class SaslMechanism(StrEnum):
    """The SASL mechanism (Kafka's ``sasl.mechanism``)."""

    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


_SASL = frozenset({SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL})
_TLS = frozenset({SecurityProtocol.SSL, SecurityProtocol.SASL_SSL})


class KafkaSettings(BaseModel):
    """How to reach the federation's Kafka cluster. Validated when built."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = Field(
        min_length=1,
        pattern=r"^\s*[^\s,:]+:\d{1,5}\s*(,\s*[^\s,:]+:\d{1,5}\s*)*$",
        description="comma-separated host:port list",
    )
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    #: A file holding the password (its first line), read when a client is made: keeps the
    #: secret out of the config file and the environment (a systemd credential, a mounted
    #: secret). Not with ``sasl_password``.
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    request_timeout_ms: int = Field(default=30_000, ge=1_000, le=600_000)
    max_batch_bytes: int = Field(default=1_048_576, ge=16_384, le=16_777_216)
    linger_ms: int = Field(default=5, ge=0, le=10_000)
    client_id: str = Field(default="ncp-exchange", min_length=1, max_length=200)
    topic_replication_factor: int = Field(default=1, ge=1, le=32)
    topic_compression_type: TopicCompression = TopicCompression.PRODUCER
    #: SASL PLAIN sends the password as it is: over SASL_PLAINTEXT anyone on the path reads
    #: it. Refused unless this is set (a broker on the same host, a test cluster).
    allow_plaintext_sasl_plain: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        if (
            self.security_protocol is SecurityProtocol.SASL_PLAINTEXT
            and self.sasl_mechanism is SaslMechanism.PLAIN
            and not self.allow_plaintext_sasl_plain
        ):
            raise ValueError(
                "sasl_mechanism: PLAIN over SASL_PLAINTEXT sends the password in clear; use"
                " SASL_SSL or SCRAM, or set allow_plaintext_sasl_plain = true"
            )
        if self.security_protocol in _SASL:
            if not self.sasl_username:
                raise ValueError(f"sasl_username: required with {self.security_protocol}")
            if self.sasl_password is not None and self.sasl_password_file is not None:
                raise ValueError("sasl_password_file: not with sasl_password (choose one)")
            if self.sasl_password_file is not None:
                if not self.sasl_password_file.is_file():
                    raise ValueError(f"sasl_password_file: no such file: {self.sasl_password_file}")
            elif self.sasl_password is None or not self.sasl_password.get_secret_value():
                raise ValueError(
                    f"sasl_password: required with {self.security_protocol} (or sasl_password_file)"
                )
        files = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        for name, path in files.items():
            if path is None:
                continue
            if self.security_protocol not in _TLS:
                raise ValueError(f"{name}: set, but security_protocol is {self.security_protocol}")
            if not path.is_file():
                raise ValueError(f"{name}: no such file: {path}")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile: set without ssl_certfile")
        return self


def _problem(loc: tuple[int | str, ...], msg: str) -> tuple[str, str]:
    # Cross-field checks raise "field: reason"; pydantic puts them at the model level.
    msg = msg.removeprefix("Value error, ")
    head, sep, tail = msg.partition(": ")
    if not loc and sep and head in KafkaSettings.model_fields:
        return head, tail
    return ".".join(str(p) for p in loc) or "kafka", msg


def load_settings(data: Mapping[str, Any]) -> KafkaSettings:
    """:class:`KafkaSettings` from a mapping; ``InputError(BAD_CONFIG)`` names each bad field."""
    try:
        return KafkaSettings.model_validate(dict(data))
    except ValidationError as exc:
        problems = [_problem(err["loc"], err["msg"]) for err in exc.errors()]
        raise InputError(problems, reason=Reason.BAD_CONFIG) from None


def ssl_context(s: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context for SSL / SASL_SSL (verifying the brokers), or None for plaintext."""
    if s.security_protocol not in _TLS:
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(s.ssl_cafile) if s.ssl_cafile is not None else None
        )
    except (ssl.SSLError, OSError) as exc:
        raise InputError(
            [("ssl_cafile", f"not a usable CA file: {exc}")], reason=Reason.BAD_CONFIG
        ) from None
    if s.ssl_certfile is not None:
        try:
            context.load_cert_chain(
                str(s.ssl_certfile), str(s.ssl_keyfile) if s.ssl_keyfile is not None else None
            )
        except (ssl.SSLError, OSError) as exc:
            raise InputError(
                [("ssl_certfile", f"not a usable certificate/key pair: {exc}")],
                reason=Reason.BAD_CONFIG,
            ) from None
    return context


def _common_kwargs(s: KafkaSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": s.bootstrap_servers.replace(" ", ""),
        "client_id": s.client_id,
        "request_timeout_ms": s.request_timeout_ms,
        "security_protocol": s.security_protocol.value,
    }
    context = ssl_context(s)
    if context is not None:
        kwargs["ssl_context"] = context
    if s.security_protocol in _SASL:
        kwargs["sasl_mechanism"] = s.sasl_mechanism.value
        kwargs["sasl_plain_username"] = s.sasl_username
        kwargs["sasl_plain_password"] = sasl_password(s)
    return kwargs


def sasl_password(s: KafkaSettings) -> str:
    """The SASL password: ``sasl_password``, or the first line of ``sasl_password_file``."""
    if s.sasl_password_file is not None:
        return read_secret(s.sasl_password_file, "sasl_password_file")
    assert s.sasl_password is not None  # the validator made sure
    return s.sasl_password.get_secret_value()


def producer_kwargs(s: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``: idempotent, ``acks="all"``, large batches."""
    return {
        **_common_kwargs(s),
        "enable_idempotence": True,
        "acks": "all",
        "max_batch_size": s.max_batch_bytes,
        "max_request_size": max(s.max_batch_bytes, 1_048_576),
        "linger_ms": s.linger_ms,
    }


def consumer_kwargs(s: KafkaSettings, group_id: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaConsumer``: no auto-commit, read from the earliest offset."""
    return {
        **_common_kwargs(s),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }


def admin_kwargs(s: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaAdminClient``."""
    return _common_kwargs(s)
