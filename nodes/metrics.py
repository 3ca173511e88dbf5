"""The node's metrics, kept and rendered by ``prometheus_client`` in a registry of their own.

Each :class:`Metrics` has its own ``CollectorRegistry`` (never the process-wide default one),
so several nodes in one process (the tests, the demo) count apart. The loops update them
through a small API that tests read too::

    metrics.stored.inc(1, topic)          metrics.stored.value(topic)   # None: all labels
    metrics.lag.set(12, topic)            metrics.commit_latency.observe(0.003)
    metrics.withheld.inc(1, ("case-system", "tlp_not_allowed"))        # two labels: a tuple

:meth:`Metrics.render` is the Prometheus text format for ``GET /metrics``; values are
written with full precision (a Unix time in seconds keeps its microseconds).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as _PromCounter
from prometheus_client import Gauge as _PromGauge
from prometheus_client import Histogram as _PromHistogram
from prometheus_client.metrics import MetricWrapperBase

#: A label value, or a tuple of them for a metric with several labels; "" when unlabelled.
Label = str | tuple[str, ...]


class _Metric:
    """One metric family with zero or more label names; children cached per label value."""

    def __init__(self, metric: MetricWrapperBase, sample: str, label_names: Sequence[str]) -> None:
        self._metric = metric
        self._sample = sample  # the sample name that carries the value
        self._label_names = tuple(label_names)
        self._children: dict[Label, MetricWrapperBase] = {}

    def _child(self, label: Label) -> MetricWrapperBase:
        try:
            return self._children[label]
        except KeyError:
            pass
        if not self._label_names:
            child = self._metric
        else:
            values = (label,) if isinstance(label, str) else label
            child = self._metric.labels(*values)
        self._children[label] = child
        return child

    def _samples(self) -> list[tuple[tuple[str, ...], float]]:
        out = []
        for family in self._metric.collect():
            for sample in family.samples:
                if sample.name == self._sample:
                    key = tuple(sample.labels.get(n, "") for n in self._label_names)
                    out.append((key, sample.value))
        return out

    def value(self, label: Label | None = None) -> float:
        """The value for ``label``; ``None``: the sum over every label (counters)."""
        if label is None:
            return sum(v for _, v in self._samples())
        if not self._label_names:
            return sum(v for _, v in self._samples())
        key = (label,) if isinstance(label, str) else label
        return sum(v for k, v in self._samples() if k == key)


class Counter(_Metric):
    def __init__(
        self, registry: CollectorRegistry, name: str, help: str, *label_names: str
    ) -> None:
        metric = _PromCounter(name, help, label_names, registry=registry)
        super().__init__(metric, name if name.endswith("_total") else f"{name}_total", label_names)

    def inc(self, amount: float = 1.0, label: Label = "") -> None:
        self._child(label).inc(amount)  # type: ignore[attr-defined]


class Gauge(_Metric):
    def __init__(
        self, registry: CollectorRegistry, name: str, help: str, *label_names: str
    ) -> None:
        super().__init__(_PromGauge(name, help, label_names, registry=registry), name, label_names)

    def set(self, value: float, label: Label = "") -> None:
        self._child(label).set(value)  # type: ignore[attr-defined]

    def value(self, label: Label | None = "") -> float:
        return super().value(label)


DEFAULT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram(_Metric):
    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        help: str,
        buckets: Sequence[float] = DEFAULT_BUCKETS_S,
    ) -> None:
        metric = _PromHistogram(name, help, registry=registry, buckets=tuple(buckets))
        super().__init__(metric, f"{name}_count", ())

    def observe(self, value: float) -> None:
        self._metric.observe(value)  # type: ignore[attr-defined]


class Metrics:
    """Everything the node counts, in its own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.published = Counter(
            r, "exchange_published_total", "Outbox items acknowledged by Kafka."
        )
        self.consumed = Counter(
            r,
            "exchange_consumed_total",
            "Records decided (stored, skipped or quarantined), counted at their decision: "
            "a batch fetched ahead and dropped undecided counts when read again and decided.",
        )
        self.stored = Counter(r, "exchange_stored_total", "Records stored as valid.", "topic")
        self.quarantined = Counter(
            r, "exchange_quarantined_total", "Records quarantined, by reason.", "reason"
        )
        self.skipped = Counter(r, "exchange_skipped_total", "Records not for this node.", "reason")
        self.retractions = Counter(r, "exchange_retractions_total", "Retractions applied.")
        self.disclosed = Counter(
            r,
            "exchange_disclosed_total",
            "Records shared through outbound connectors.",
            "connector",
        )
        self.withheld = Counter(
            r,
            "exchange_withheld_total",
            "Deliveries to outbound connectors withheld by the onward-sharing rules, by reason.",
            "connector",
            "reason",
        )
        self.publish_errors = Counter(
            r, "exchange_publish_errors_total", "Failed publish attempts."
        )
        self.own_matched = Counter(
            r,
            "exchange_own_matched_total",
            "This node's own records read back and matched to its outbox (no signature check).",
        )
        self.reread = Counter(
            r,
            "exchange_consumer_reread_total",
            "Records fetched again below the consumer's position (dropped, never processed).",
            "topic",
        )
        self.lag = Gauge(r, "exchange_consumer_lag", "Records on Kafka not yet stored.", "topic")
        self.outbox_depth = Gauge(r, "exchange_outbox_depth", "Outbox items not yet sent.")
        self.last_batch = Gauge(
            r, "exchange_last_batch_timestamp_seconds", "Unix time of the last committed batch."
        )
        self.commit_latency = Histogram(
            r, "exchange_store_commit_seconds", "Time of one store commit_batch."
        )
        self.connector_up = Gauge(
            r,
            "exchange_connector_up",
            "1 while a connector delivers, 0 while it fails.",
            "connector",
        )
        self.connector_failures = Counter(
            r,
            "exchange_connector_failures_total",
            "Connector calls that raised or timed out (each retried with backoff).",
            "connector",
        )
        self.task_up = Gauge(
            r,
            "exchange_task_up",
            "1 while a supervised loop runs, 0 while it waits to restart or has stopped.",
            "task",
        )
        self.task_state = Gauge(
            r,
            "exchange_task_state",
            "The state of each supervised loop: 1 for its current state, 0 for the others.",
            "task",
            "state",
        )
        self.task_restarts = Counter(
            r,
            "exchange_task_restarts_total",
            "Restarts of a supervised loop after it failed.",
            "task",
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
