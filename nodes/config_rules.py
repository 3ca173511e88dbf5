"""The node's data-sharing rules and connector instances: the ``[rules.<topic>]`` tables
(:class:`TopicRules`, :class:`PseudonymRules`, gathered in :class:`RulesConfig`) and each
``[[connectors]]`` entry (:class:`ConnectorConfig`), with the strict, frozen base every
config table shares (:class:`Section`). :mod:`nodes.config` assembles them into
:class:`~nodes.config.NodeConfig` and re-exports these names.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from exchange.ids import NODE_ID_RE
from exchange.topics import TopicKind

_FIELD_PATH_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

HandlingCodeName = Literal["H0", "H1", "H2", "H3"]
#: A TLP 2.0 level as the wire spells it (``AMBER+STRICT`` is accepted in the file).
TlpName = Literal["CLEAR", "GREEN", "AMBER", "AMBER_STRICT", "RED"]


def _tlp_name(value: Any) -> Any:
    """``"amber+strict"``, ``"TLP:RED"`` ... as the wire's spelling (others left to fail)."""
    if isinstance(value, str):
        return value.strip().upper().removeprefix("TLP:").replace("+", "_")
    return value


class OnRetraction(StrEnum):
    """What a node does with a stored record its sender retracts."""

    WITHDRAW = "withdraw"  # keep it, marked withdrawn (auditable)
    PURGE = "purge"  # delete it (an ERASURE audit event is logged)


class Section(BaseModel):
    """A config table: unknown settings are errors, and a loaded value never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _node_list(values: list[str], allow_star: bool) -> list[str]:
    bad = [v for v in values if not (NODE_ID_RE.match(v) or (allow_star and v == "*"))]
    if bad:
        raise ValueError(
            f"not node ids (two upper-case letters{' or *' if allow_star else ''}): {bad}"
        )
    return values


class TopicRules(Section):
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


class RulesConfig(Section):
    alerts: TopicRules = Field(default_factory=TopicRules)
    blacklist: TopicRules = Field(default_factory=TopicRules)
    pseudonyms: PseudonymRules = Field(default_factory=PseudonymRules)
    indicators: TopicRules = Field(default_factory=TopicRules)

    def for_kind(self, kind: TopicKind) -> TopicRules:
        rules: TopicRules = getattr(self, kind.value)
        return rules


class ConnectorConfig(Section):
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
