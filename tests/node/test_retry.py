"""The one retry policy of the node: capped exponential backoff with full jitter."""

from __future__ import annotations

import random

import pytest

from nodes.retry import Backoff, RetryPolicy


def test_ten_thousand_failures_never_overflow_and_stay_within_the_cap() -> None:
    """10,000 consecutive failures give finite delays, none above the cap, spread over the
    whole window below each ceiling (full jitter), growing exponentially first."""
    backoff = Backoff(0.2, 30.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(10_000)]
    assert backoff.failures == 10_000
    assert all(0.0 <= d <= 30.0 for d in delays)
    late = delays[100:]
    assert min(late) < 3.0  # full jitter reaches down near zero ...
    assert max(late) > 27.0  # ... and up near the cap
    assert 12.0 < sum(late) / len(late) < 18.0  # uniform on [0, 30]: mean 15
    policy = backoff.policy
    assert [policy.ceiling(n) for n in range(4)] == pytest.approx([0.2, 0.4, 0.8, 1.6])
    assert policy.ceiling(10_000) == policy.ceiling(2**62) == 30.0


def test_reset_starts_from_the_initial_delay_again() -> None:
    """After reset the next delay is drawn below the initial delay again."""
    backoff = Backoff(1.0, 60.0, rng=random.Random(1))
    for _ in range(50):
        backoff.next_delay()
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_delay() <= 1.0


@pytest.mark.parametrize(
    ("initial", "maximum", "multiplier"),
    [(0.0, 1.0, 2.0), (2.0, 1.0, 2.0), (0.1, 1.0, 1.0), (0.1, float("inf"), 2.0)],
)
def test_a_policy_that_cannot_work_is_refused(
    initial: float, maximum: float, multiplier: float
) -> None:
    """Zero or inverted bounds, an infinite cap or a multiplier of 1 are refused."""
    with pytest.raises(ValueError, match="retry"):
        RetryPolicy(initial, maximum, multiplier)
