"""The ``[stats]`` table of a node's config: how it publishes its statistical indicators.

[stats]
enabled = true              # the daemon publishes on its own (the CLI works either way)
period = "month"            # month, week or day
threshold = 5               # counts under it travel as "<5"; 0 or 1: exact counts
check_interval_s = 3600     # how often the daemon looks for a closed period to publish
recheck_periods = 1         # closed periods looked at each time (late data: a correction)
tlp = "GREEN"               # the indicators' handling (aggregates: GREEN / H0 by default)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from exchange.models import Tlp
from exchange.models.indicator import MAX_SUPPRESSION
from exchange.stats.period import PeriodKind


class StatsConfig(BaseModel):
    """How this node publishes its statistical indicators."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    period: PeriodKind = PeriodKind.MONTH
    threshold: int = Field(default=5, ge=0, le=MAX_SUPPRESSION)
    check_interval_s: float = Field(default=3600.0, gt=0, le=86_400 * 7)
    first_check_after_s: float = Field(default=300.0, ge=0, le=86_400)
    recheck_periods: int = Field(default=1, ge=1, le=24)
    tlp: Tlp = Tlp.GREEN
