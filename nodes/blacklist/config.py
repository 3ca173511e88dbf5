"""The ``[blacklist]`` section of a node's config: per joint list rules and timings.

[blacklist]
rpz_zone = "rpz.ncp.example."
snapshot_interval_s = 86400
[blacklist.lists.csam]
min_members = 2                         # distinct members that must list an entry
owners = { CSAM = ["FR", "NL", "DE"] }  # owners accepted per category ("*": any other)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from exchange.blacklist.policy import ListRule, rule_from


class JointListRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_members: int = Field(default=1, ge=1, le=64)
    owners: dict[str, list[str]] = Field(default_factory=dict)

    def rule(self) -> ListRule:
        return rule_from(self.min_members, self.owners)


class BlacklistConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lists: dict[str, JointListRule] = Field(default_factory=dict)
    rpz_zone: str = "rpz.ncp.invalid."
    sync_interval_s: float = Field(default=2.0, gt=0, le=3600)
    snapshot_interval_s: float = Field(default=86_400.0, gt=0)
    #: a repair request is answered with at most one snapshot of a list per this interval
    snapshot_min_interval_s: float = Field(default=60.0, ge=0)
    #: a gap still open this long after its repair request is asked about again
    repair_retry_s: float = Field(default=300.0, gt=0)
    #: /healthz names a consumer still on an older export this long after the newer one
    applied_grace_s: float = Field(default=3600.0, ge=0)
    #: entries per snapshot part (a record holds at most 100,000)
    snapshot_part_entries: int = Field(default=50_000, ge=1, le=100_000)

    def rule(self, joint: str) -> ListRule:
        spec = self.lists.get(joint)
        return ListRule() if spec is None else spec.rule()
