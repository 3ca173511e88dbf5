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
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from exchange.bus import KafkaSettings
from exchange.errors import InputError, Reason
from exchange.ids import NODE_ID_RE, NodeId
from exchange.topics import DEFAULT_PREFIX, TopicKind
from nodes.blacklist.config import BlacklistConfig
from nodes.retry import RetryPolicy
from nodes.stats.config import StatsConfig

#: The folder relative paths are resolved against, while a config is being validated.
_BASE_DIR: ContextVar[Path | None] = ContextVar("_BASE_DIR", default=None)

_FIELD_PATH_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_LISTEN_RE = re.compile(r"^[^\s:]+:\d{1,5}$")

HandlingCodeName = Literal["H0", "H1", "H2", "H3"]
#: A TLP 2.0 level as the wire spells it (``AMBER+STRICT`` is accepted in the file).
TlpName = Literal["CLEAR", "GREEN", "AMBER", "AMBER_STRICT", "RED"]


def _tlp_name(value: Any) -> Any:
    """``"amber+strict"``, ``"TLP:RED"`` ... as the wire's spelling (others left to fail)."""
    if isinstance(value, str):
        return value.strip().upper().removeprefix("TLP:").replace("+", "_")
    return value


class ConfigError(InputError):
    """The config file is unusable; ``problems`` lists every (dotted path, reason)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(problems, reason=Reason.BAD_CONFIG)


class OnRetraction(StrEnum):
    """What a node does with a stored record its sender retracts."""

    WITHDRAW = "withdraw"  # keep it, marked withdrawn (auditable)
    PURGE = "purge"  # delete it (an ERASURE audit event is logged)


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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeysConfig(_Section):
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


class StoreConfig(_Section):
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


class HttpConfig(_Section):
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


def _node_list(values: list[str], allow_star: bool) -> list[str]:
    bad = [v for v in values if not (NODE_ID_RE.match(v) or (allow_star and v == "*"))]
    if bad:
        raise ValueError(
            f"not node ids (two upper-case letters{' or *' if allow_star else ''}): {bad}"
        )
    return values


class TopicRules(_Section):
    """The data-sharing rules for one topic."""

    accept_senders: list[str] = Field(default_factory=lambda: ["*"])
    categories_kept: list[str] = Field(default_factory=lambda: ["*"])
    drop_fields: list[str] = Field(default_factory=list)
    retention_days: int | None = Field(default=None, ge=1, le=36_500)
    on_retraction: OnRetraction = OnRetraction.WITHDRAW
    onward_sharing_max_handling_code: HandlingCodeName = "H1"
    #: The most restricted TLP that may leave through outbound connectors. RED and
    #: AMBER+STRICT need, besides, the connector's own ``allowed_tlp`` naming them.
    onward_sharing_max_tlp: TlpName = "RED"

    @field_validator("onward_sharing_max_tlp", mode="before")
    @classmethod
    def _tlp(cls, value: Any) -> Any:
        return _tlp_name(value)

    @field_validator("accept_senders", "categories_kept", mode="before")
    @classmethod
    def _all(cls, value: Any) -> Any:
        return ["*"] if isinstance(value, str) and value.strip().lower() in ("*", "all") else value

    @field_validator("accept_senders")
    @classmethod
    def _senders(cls, value: list[str]) -> list[str]:
        return _node_list(value, allow_star=True)

    @field_validator("categories_kept")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        if value == ["*"]:
            return value
        from exchange.models import OffenceCategory

        known = {c.value for c in OffenceCategory}
        bad = [v for v in value if v not in known]
        if bad:
            raise ValueError(f"unknown categories {bad}; known: {sorted(known)} or ['*']")
        return value

    @field_validator("drop_fields")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _FIELD_PATH_RE.match(v)]
        if bad:
            raise ValueError(f"not dotted field paths: {bad}")
        return value

    @property
    def all_senders(self) -> bool:
        return "*" in self.accept_senders

    @property
    def all_categories(self) -> bool:
        return "*" in self.categories_kept


class PseudonymRules(TopicRules):
    """Rules for the pseudonym topic, plus who may query and how often (enforced by the query
    service; stored here so one file holds every rule)."""

    query_allowed_from: list[str] = Field(default_factory=list)
    max_queries_per_hour: int = Field(default=60, ge=0, le=1_000_000)
    #: Requests for details undecided this long are overdue (Pruem II: 48 h for core data).
    details_decision_timeout_h: float = Field(default=48.0, gt=0, le=8760)

    @field_validator("query_allowed_from")
    @classmethod
    def _queriers(cls, value: list[str]) -> list[str]:
        return _node_list(value, allow_star=True)


class RulesConfig(_Section):
    alerts: TopicRules = Field(default_factory=TopicRules)
    blacklist: TopicRules = Field(default_factory=TopicRules)
    pseudonyms: PseudonymRules = Field(default_factory=PseudonymRules)
    indicators: TopicRules = Field(default_factory=TopicRules)

    def for_kind(self, kind: TopicKind) -> TopicRules:
        rules: TopicRules = getattr(self, kind.value)
        return rules


class ConnectorConfig(_Section):
    """One outbound/inbound connector plugin instance."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    plugin: str = Field(min_length=1)  # entry-point name in exchange.connectors, or "module:attr"
    topics: list[TopicKind] = Field(default_factory=lambda: list(TopicKind))
    enabled: bool = True
    #: TLP levels of RED / AMBER+STRICT this connector may receive (named explicitly; any
    #: other level only needs the topic's ``onward_sharing_max_tlp``).
    allowed_tlp: list[TlpName] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    #: Outbound: the longest one ``deliver``/``retract`` call may take; past it the call is
    #: abandoned and retried with backoff (a hanging connector never stalls the node).
    timeout_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("allowed_tlp", mode="before")
    @classmethod
    def _tlps(cls, value: Any) -> Any:
        return [_tlp_name(v) for v in value] if isinstance(value, list) else value


class RetryConfig(_Section):
    """The backoff of every loop (publisher, consumer, connectors, retention, and the
    supervisor restarting a loop that crashed): capped exponential, full jitter."""

    initial_ms: int = Field(default=200, ge=1, le=600_000)
    max_ms: int = Field(default=30_000, ge=1, le=3_600_000)
    #: A loop down (crashed, waiting to restart, or failing again right after its restart)
    #: for longer than this makes /healthz answer 503 naming it.
    unhealthy_after_s: float = Field(default=60.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _order(self) -> RetryConfig:
        if self.max_ms < self.initial_ms:
            raise ValueError("max_ms must be >= initial_ms")
        return self

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.initial_ms / 1000, self.max_ms / 1000)


class PublisherConfig(_Section):
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    #: Former names of ``[retry] initial_ms`` / ``max_ms``, still accepted so node.toml files
    #: written before ``[retry]`` load unchanged; after loading they equal the [retry] values.
    backoff_initial_ms: int = Field(default=200, ge=1, le=600_000)
    backoff_max_ms: int = Field(default=30_000, ge=1, le=3_600_000)
    poll_interval_ms: int = Field(default=500, ge=10, le=600_000)
    #: Items signed longer ago than this but not yet on the bus (a broker outage) are signed
    #: again with a fresh time before sending: receivers refuse a created_at further than
    #: their max_skew_s (300 s by default) from the broker's time. Keep it well below that.
    reseal_after_s: float = Field(default=120.0, gt=0, le=86_400)
    #: Sends not acknowledged within this stop the producer (failing them, so they can be
    #: signed again later): an idempotent producer would otherwise retry them for ever and
    #: deliver them, stale, whenever the broker returns.
    ack_timeout_s: float = Field(default=60.0, gt=0, le=3_600)

    @model_validator(mode="after")
    def _order(self) -> PublisherConfig:
        if self.backoff_max_ms < self.backoff_initial_ms:
            raise ValueError("backoff_max_ms must be >= backoff_initial_ms")
        return self


class OwnMessages(StrEnum):
    """What a node does with its own messages when it reads them back from the bus."""

    #: match each against the outbox by envelope hash (one hash, no signature check) and
    #: store it; one signed with this node's key that it never sent is quarantined
    MATCH = "match"
    STORE = "store"  # verify and store them like any other (its store shows what it shared)
    SKIP = "skip"  # skip them unverified (half the CPU on a node that mostly sends)


def default_open_processes() -> int:
    """2 worker processes when there are 2 cores or more to run them on, else 0 (one core:
    processes only add work).

    Re-measured with ZIP-215 batch checks (2026-11-30, DE alone draining 20,000 alerts on
    the 2 shared cores, two alternating pairs at a quiet moment): 11.0k msg/s with 2
    processes, 8.1k with threads (0.74x). CPU a record: threads 126 us, all in the node
    process (the GIL is released only for the batch check, ~10 us of it); processes 52 us
    in the node process and 79 us in the workers. On a busier machine (8 more pairs, load
    average 3-6 from other work) the two came out even (paired ratios 0.44-1.34, median
    about 1.0): other work then holds the second core the workers need. A node
    has its cores to itself, so processes stay the default; ``open_processes = 0`` saves
    their memory (~170 MB on DE).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 2 if cores >= 2 else 0


class ConsumerConfig(_Section):
    max_records: int = Field(default=2000, ge=1, le=100_000)
    own_messages: OwnMessages = OwnMessages.MATCH
    poll_timeout_ms: int = Field(default=500, ge=1, le=60_000)
    verify_threads: int = Field(default=2, ge=0, le=32)  # 0: verify on the event loop's thread
    #: Worker processes opening records (nodes.openpool); 0: threads (verify_threads) only.
    #: Default: 2 when this process may run on 2 or more cores, else 0.
    open_processes: int = Field(default_factory=default_open_processes, ge=0, le=64)
    max_skew_s: float = Field(default=300.0, ge=0, le=86_400)
    #: A record value longer than this is quarantined (too_large) before any decoding.
    max_record_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    #: Bytes one fetch may bring, per partition and in all (what a batch costs in memory).
    max_partition_fetch_bytes: int = Field(default=4 * 1_048_576, ge=65_536, le=64 * 1_048_576)
    fetch_max_bytes: int = Field(default=16 * 1_048_576, ge=65_536, le=256 * 1_048_576)


class LogConfig(_Section):
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
