"""One retry policy for every loop of the node: capped exponential backoff with full jitter.

The n-th consecutive failure (n = 0, 1, ...) waits a delay drawn uniformly from
``[0, min(max_s, initial_s * multiplier**n)]`` ("full jitter": retries of many nodes after
one broker outage spread over the whole window instead of arriving together). The exponent
stops growing once the ceiling has reached ``max_s``, so the delay never overflows however
many failures there are (the former ``2**failures`` raised OverflowError after about a
thousand failures, and killed the loop that was retrying).

The policy comes from the config's ``[retry]`` table (:class:`nodes.config.RetryConfig`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait between attempts: ``initial_s`` growing by ``multiplier`` up to
    ``max_s``."""

    initial_s: float = 0.2
    max_s: float = 30.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s) or not math.isfinite(self.max_s):
            raise ValueError("retry needs 0 < initial_s <= max_s (finite)")
        if not (self.multiplier > 1 and math.isfinite(self.multiplier)):
            raise ValueError("retry multiplier must be a finite number > 1")

    def ceiling(self, failures: int) -> float:
        """The largest delay after ``failures`` consecutive failures before this one."""
        # The exponent at which the ceiling reaches max_s; beyond it nothing changes, so
        # the power is never computed for a large exponent (no overflow, no inf).
        cap = math.ceil(math.log(self.max_s / self.initial_s, self.multiplier))
        return min(self.max_s, self.initial_s * self.multiplier ** min(max(failures, 0), cap))


class Backoff:
    """The consecutive failures of one loop and the delay before its next attempt.

    ``Backoff(initial_s, max_s)`` or ``Backoff.of(policy)``; ``rng`` lets a test draw
    reproducible delays.
    """

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        *,
        multiplier: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = RetryPolicy(initial_s, max_s, multiplier)
        self.failures = 0
        self._rng = rng or random.Random()

    @classmethod
    def of(cls, policy: RetryPolicy, *, rng: random.Random | None = None) -> Backoff:
        return cls(policy.initial_s, policy.max_s, multiplier=policy.multiplier, rng=rng)

    @property
    def initial_s(self) -> float:
        return self.policy.initial_s

    @property
    def max_s(self) -> float:
        return self.policy.max_s

    def next_delay(self) -> float:
        """Count one more failure; the seconds to wait before the next attempt."""
        ceiling = self.policy.ceiling(self.failures)
        self.failures += 1
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        """The loop works again: the next failure starts from ``initial_s``."""
        self.failures = 0
