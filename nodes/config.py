"""The node's configuration: ONE TOML file, overridable by ``EXCHANGE_*`` environment variables.

Shape (``exchange federation init`` writes the first five tables)::

    node_id = "FR"
    [keys]        signing_key, encryption_key, trust_list, root_public_key (paths)
    [kafka]       bootstrap_servers, topic_prefix, security settings of exchange.bus.KafkaSettings
    [store]       url ("sqlite:///node.db" or "postgresql://..."), purge_interval_s,
                  quarantine_retention_days
    [http]        listen ("127.0.0.1:9100" serves /healthz and /metrics; "" disables)
    [rules.alerts] / [rules.blacklist] / [rules.pseudonyms] / [rules.indicators]
                  accept_senders, categories_kept, drop_fields, retention_days,
                  on_retraction, onward_sharing_max_handling_code (+ pseudonym query limits)
                  onward_sharing_max_tlp
    [[connectors]] name, plugin, topics, allowed_tlp, options
    [retry]       initial_ms, max_ms, unhealthy_after_s (every loop's backoff)
    [publisher]   batch_size, poll_interval_ms (backoff_initial_ms, backoff_max_ms: the
                  former names of [retry] initial_ms / max_ms, still accepted)
    [consumer]    max_records, poll_timeout_ms, verify_threads, open_processes,
                  max_skew_s, own_messages, max_record_bytes, max_partition_fetch_bytes,
                  fetch_max_bytes
    [log]         level, format
    [stats]       enabled, period, threshold, check_interval_s, first_check_after_s,
                  recheck_periods, tlp (statistical indicators: nodes/stats/config.py)

Environment variables override the file: prefix ``EXCHANGE_``, nested delimiter ``__``
(``EXCHANGE_KAFKA__BOOTSTRAP_SERVERS=host:9092``, ``EXCHANGE_LOG__LEVEL=debug``).
Relative paths (keys, TLS files, a SQLite file) are relative to the config file's folder.
:func:`load_config` reports EVERY problem at once, each as ``path: reason``, in one
:class:`ConfigError`.

This module holds the top level (:class:`NodeConfig`, loading, the keys, kafka, store, http
and log tables); the ``[rules.*]`` tables and ``[[connectors]]`` are in
:mod:`nodes.config_rules`, the ``[retry]``, ``[publisher]`` and ``[consumer]`` tables in
:mod:`nodes.config_loops`. Every name is importable from here.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from exchange.bus import KafkaSettings
from exchange.errors import InputError, Reason
from exchange.ids import NODE_ID_RE, NodeId
from exchange.topics import DEFAULT_PREFIX
from nodes.blacklist.config import BlacklistConfig
from nodes.config_loops import (
    ConsumerConfig,
    OwnMessages,
    PublisherConfig,
    RetryConfig,
    default_open_processes,
)
from nodes.config_rules import (
    ConnectorConfig,
    HandlingCodeName,
    OnRetraction,
    PseudonymRules,
    RulesConfig,
    Section,
    TlpName,
    TopicRules,
)
from nodes.stats.config import StatsConfig

__all__ = [
    "ConfigError",
    "ConnectorConfig",
    "ConsumerConfig",
    "HandlingCodeName",
    "HttpConfig",
    "KafkaConfig",
    "KeysConfig",
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "NodeConfig",
    "OnRetraction",
    "OwnMessages",
    "PseudonymRules",
    "PublisherConfig",
    "RetryConfig",
    "RulesConfig",
    "StoreConfig",
    "TlpName",
    "TopicRules",
    "config_from_dict",
    "default_open_processes",
    "load_config",
]

#: The folder relative paths are resolved against, while a config is being validated.
_BASE_DIR: ContextVar[Path | None] = ContextVar("_BASE_DIR", default=None)

_LISTEN_RE = re.compile(r"^[^\s:]+:\d{1,5}$")


class ConfigError(InputError):
    """The config file is unusable; ``problems`` lists every (dotted path, reason)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(problems, reason=Reason.BAD_CONFIG)


class LogFormat(StrEnum):
    AUTO = "auto"  # JSON when stderr is not a terminal, console otherwise
    JSON = "json"
    CONSOLE = "console"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def _resolve(path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else ((_BASE_DIR.get() or Path.cwd()) / path).resolve()


def _existing_file(path: Path) -> Path:
    path = _resolve(path)
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


class KeysConfig(Section):
    """This node's key files and the federation's trust list."""

    signing_key: Path
    encryption_key: Path
    trust_list: Path
    #: The federation root key, pinned: SHA-256 of its 32 raw bytes, hex (`exchange trust
    #: show` prints it). The root key is then read from the trust list and must match it.
    root_fingerprint: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    root_public_key: Path | None = None  # without root_fingerprint: root.pub beside the list

    @field_validator("signing_key", "encryption_key", "trust_list", "root_public_key")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        return None if value is None else _existing_file(value)

    @field_validator("root_fingerprint", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class KafkaConfig(KafkaSettings):
    """exchange.bus.KafkaSettings plus the federation's topic prefix."""

    topic_prefix: str = Field(default=DEFAULT_PREFIX, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_password_file")
    @classmethod
    def _relative_to_config(cls, value: Path | None) -> Path | None:
        return None if value is None else _resolve(value)

    def settings(self) -> KafkaSettings:
        """The plain :class:`KafkaSettings` for exchange.bus."""
        return KafkaSettings.model_validate(self.model_dump(exclude={"topic_prefix"}))


class StoreConfig(Section):
    url: str = "sqlite:///node.db"
    purge_interval_s: float = Field(default=3600.0, gt=0, le=86_400)
    #: Quarantine entries older than this are erased by the retention job (ERASURE logged).
    quarantine_retention_days: float = Field(default=90.0, gt=0, le=36_500)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value.startswith("sqlite:///"):
            path = value.removeprefix("sqlite:///")
            if not path:
                raise ValueError("sqlite url names no file (sqlite:///node.db)")
            return f"sqlite:///{_resolve(Path(path))}"
        if value.startswith(("postgresql://", "postgres://")):
            return value
        raise ValueError("unsupported store url: use sqlite:///FILE or postgresql://...")


class HttpConfig(Section):
    listen: str = ""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        value = value.strip()
        if value and (not _LISTEN_RE.match(value) or not 0 <= int(value.rsplit(":", 1)[1]) < 65536):
            raise ValueError("must be HOST:PORT (e.g. 127.0.0.1:9100; port 0: any) or empty")
        return value

    @property
    def host_port(self) -> tuple[str, int] | None:
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host, int(port)


class LogConfig(Section):
    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.AUTO


class NodeConfig(BaseSettings):
    """The whole node configuration (validated; paths absolute)."""

    model_config = SettingsConfigDict(
        env_prefix="EXCHANGE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    node_id: str
    keys: KeysConfig
    kafka: KafkaConfig
    store: StoreConfig = Field(default_factory=StoreConfig)
    blacklist: BlacklistConfig = Field(default_factory=BlacklistConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    connectors: list[ConnectorConfig] = Field(default_factory=list)
    publisher: PublisherConfig = Field(default_factory=PublisherConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    consumer: ConsumerConfig = Field(default_factory=ConsumerConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (the file's values arrive as init kwargs).
        return env_settings, init_settings

    @model_validator(mode="before")
    @classmethod
    def _legacy_backoff(cls, data: Any) -> Any:
        """``[publisher] backoff_initial_ms / backoff_max_ms`` (the names before ``[retry]``)
        fill ``[retry] initial_ms / max_ms`` when those are not given; ``[retry]`` wins when
        both are. Afterwards both tables hold the same values (one policy)."""
        if not isinstance(data, dict):
            return data
        publisher, retry = data.get("publisher", {}), data.get("retry", {})
        if not isinstance(publisher, dict) or not isinstance(retry, dict):
            return data  # already models, or wrong types that validation reports
        publisher, given = dict(publisher), dict(retry)
        retry = dict(given)
        for old, new in (("backoff_initial_ms", "initial_ms"), ("backoff_max_ms", "max_ms")):
            if new in given:
                publisher[old] = given[new]
            elif old in publisher:
                retry[new] = publisher[old]
        try:
            inverted = int(retry["max_ms"]) < int(retry["initial_ms"])
        except (KeyError, TypeError, ValueError):
            inverted = False
        if inverted and "initial_ms" not in given and "max_ms" not in given:
            retry = given  # an inverted legacy pair: reported once, under [publisher]
        return {**data, "publisher": publisher, "retry": retry}

    @field_validator("node_id")
    @classmethod
    def _node(cls, value: str) -> str:
        if not NODE_ID_RE.match(value):
            raise ValueError("must be an ISO 3166-1 alpha-2 code in upper case, e.g. FR")
        return value

    @field_validator("connectors")
    @classmethod
    def _unique_names(cls, value: list[ConnectorConfig]) -> list[ConnectorConfig]:
        names = [c.name for c in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"connector names must be unique; repeated: {dupes}")
        return value

    @property
    def node(self) -> NodeId:
        return NodeId(self.node_id)

    @property
    def root_public_key_path(self) -> Path:
        return self.keys.root_public_key or self.keys.trust_list.parent / "root.pub"

    @property
    def consumer_group(self) -> str:
        return f"{self.kafka.topic_prefix}.node.{self.node_id}"


@contextmanager
def _base_dir(path: Path) -> Iterator[None]:
    token = _BASE_DIR.set(path)
    try:
        yield
    finally:
        _BASE_DIR.reset(token)


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown setting"
        out.append((where, message))
    return out


def load_config(path: Path | str, **overrides: Any) -> NodeConfig:
    """Read, override from the environment, resolve and validate the config at ``path``.

    ``overrides`` (top-level tables as dicts, merged over the file's tables) lets tests and
    the demo adjust a config without writing it. Raises :class:`ConfigError` listing every
    problem as (dotted path, reason).
    """
    path = Path(path).expanduser().resolve()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([(str(path), "config file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([(str(path), f"cannot read: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(path), f"not valid TOML: {exc}")]) from None
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return config_from_dict(data, base_dir=path.parent)


def config_from_dict(data: dict[str, Any], *, base_dir: Path) -> NodeConfig:
    """Validate an already parsed config (relative paths against ``base_dir``)."""
    with _base_dir(base_dir):
        try:
            return NodeConfig(**data)
        except ValidationError as exc:
            raise ConfigError(_problems(exc)) from None
