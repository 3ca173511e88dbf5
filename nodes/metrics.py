"""The node's metrics, rendered in the Prometheus text exposition format (no extra dependency).

Counters and gauges are plain attributes updated by the loops (one event loop: no locks);
:meth:`Metrics.render` writes them for ``GET /metrics``. Counters are also what tests read
(``node.metrics.stored.value()``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class _Labelled:
    """A counter or gauge: one value per label (``""`` when it has no label)."""

    kind: ClassVar[str]
    name: str
    help: str
    label_name: str | None = None
    _values: dict[str, float] = field(default_factory=dict)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        if self.label_name is None:
            yield f"{self.name} {self._values.get('', 0.0):g}"
            return
        for label, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(((self.label_name, label),))} {value:g}"


@dataclass
class Counter(_Labelled):
    kind: ClassVar[str] = "counter"

    def inc(self, amount: float = 1.0, label: str = "") -> None:
        self._values[label] = self._values.get(label, 0.0) + amount

    def value(self, label: str | None = None) -> float:
        if label is None:
            return sum(self._values.values())
        return self._values.get(label, 0.0)


@dataclass
class Gauge(_Labelled):
    kind: ClassVar[str] = "gauge"

    def set(self, value: float, label: str = "") -> None:
        self._values[label] = value

    def value(self, label: str = "") -> float:
        return self._values.get(label, 0.0)


DEFAULT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Histogram:
    name: str
    help: str
    buckets: Sequence[float] = DEFAULT_BUCKETS_S
    _counts: list[int] = field(default_factory=list)
    _sum: float = 0.0
    _count: int = 0

    def __post_init__(self) -> None:
        self._counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self._counts):
            self._counts[index] += 1
        self._sum += value
        self._count += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        running = 0
        for bound, count in zip(self.buckets, self._counts, strict=True):
            running += count
            yield f'{self.name}_bucket{{le="{bound:g}"}} {running}'
        yield f'{self.name}_bucket{{le="+Inf"}} {self._count}'
        yield f"{self.name}_sum {self._sum:.6f}"
        yield f"{self.name}_count {self._count}"


class Metrics:
    """Everything the node counts."""

    def __init__(self) -> None:
        self.published = Counter("exchange_published_total", "Outbox items acknowledged by Kafka.")
        self.consumed = Counter("exchange_consumed_total", "Records read from Kafka.")
        self.stored = Counter("exchange_stored_total", "Records stored as valid.", "topic")
        self.quarantined = Counter(
            "exchange_quarantined_total", "Records quarantined, by reason.", "reason"
        )
        self.skipped = Counter("exchange_skipped_total", "Records not for this node.", "reason")
        self.retractions = Counter("exchange_retractions_total", "Retractions applied.")
        self.disclosed = Counter(
            "exchange_disclosed_total", "Records shared through outbound connectors.", "connector"
        )
        self.publish_errors = Counter("exchange_publish_errors_total", "Failed publish attempts.")
        self.reread = Counter(
            "exchange_consumer_reread_total",
            "Records fetched again below the consumer's position (dropped, never processed).",
            "topic",
        )
        self.lag = Gauge("exchange_consumer_lag", "Records on Kafka not yet stored.", "topic")
        self.outbox_depth = Gauge("exchange_outbox_depth", "Outbox items not yet sent.")
        self.last_batch = Gauge(
            "exchange_last_batch_timestamp_seconds", "Unix time of the last committed batch."
        )
        self.commit_latency = Histogram(
            "exchange_store_commit_seconds", "Time of one store commit_batch."
        )

    def render(self) -> str:
        parts: list[Counter | Gauge | Histogram] = [
            self.published,
            self.consumed,
            self.stored,
            self.quarantined,
            self.skipped,
            self.retractions,
            self.disclosed,
            self.publish_errors,
            self.reread,
            self.lag,
            self.outbox_depth,
            self.last_batch,
            self.commit_latency,
        ]
        lines = [line for part in parts for line in part.render()]
        return "\n".join(lines) + "\n"
