"""The node's metrics through prometheus_client: one registry per node, full precision."""

from __future__ import annotations

from nodes.metrics import Metrics


def _samples(metrics: Metrics) -> dict[str, str]:
    text = metrics.render().decode()
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))


def test_a_timestamp_is_rendered_with_full_precision() -> None:
    """A Unix time keeps its sub-second digits (``:g`` kept six digits: 10,000 s steps)."""
    metrics = Metrics()
    metrics.last_batch.set(1_764_470_123.456789)
    assert float(_samples(metrics)["exchange_last_batch_timestamp_seconds"]) == 1_764_470_123.456789


def test_two_nodes_in_one_process_count_apart() -> None:
    """Each Metrics has its own registry: counting in one leaves the other untouched."""
    first, second = Metrics(), Metrics()
    first.stored.inc(2, "ncp.alerts.v1")
    first.quarantined.inc(1, "replayed")
    assert first.stored.value("ncp.alerts.v1") == 2
    assert first.stored.value() == 2
    assert first.quarantined.value("replayed") == 1
    assert second.stored.value() == 0
    assert 'exchange_stored_total{topic="ncp.alerts.v1"}' not in _samples(second)


def test_the_small_api_reads_what_it_wrote() -> None:
    """inc/set/observe and value() work on unlabelled, labelled and two-label metrics."""
    metrics = Metrics()
    metrics.published.inc(3)
    metrics.lag.set(7, "ncp.alerts.v1")
    metrics.outbox_depth.set(4)
    metrics.commit_latency.observe(0.002)
    metrics.withheld.inc(1, ("case", "tlp_not_allowed_by_connector"))
    metrics.withheld.inc(2, ("case", "handling_code_above_topic_max"))
    assert metrics.published.value() == 3
    assert metrics.lag.value("ncp.alerts.v1") == 7
    assert metrics.outbox_depth.value() == 4
    assert metrics.commit_latency.value() == 1
    assert metrics.withheld.value(("case", "tlp_not_allowed_by_connector")) == 1
    assert metrics.withheld.value() == 3
    samples = _samples(metrics)
    assert samples["exchange_published_total"] == "3.0"
    key = 'exchange_withheld_total{connector="case",reason="handling_code_above_topic_max"}'
    assert samples[key] == "2.0"
