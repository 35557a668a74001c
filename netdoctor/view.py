"""What a check sees: node_exporter-named series, as rates and gauges, plus inventories.

Every source (live host, capture, Prometheus) answers the same `View` interface, so a
check is written once. Series carry node_exporter's metric names and labels exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netdoctor.sources.inventory import Inventory

LabelKey = tuple[tuple[str, str], ...]

# Counters the kernel keeps in 32 bits: a decrease below this bound is a wrap, not a reset.
WRAP_32 = 2**32


def label_key(labels: Mapping[str, str] | None = None) -> LabelKey:
    """Hashable, order-independent form of a label set (hot: called once per series)."""
    if not labels:
        return ()
    if len(labels) == 1:
        return tuple(labels.items())
    return tuple(sorted(labels.items()))


@dataclass(frozen=True)
class Point:
    """One series' value: its labels and a number (a rate per second or a gauge)."""

    labels: Mapping[str, str]
    value: float

    def __getitem__(self, label: str) -> str:
        return self.labels[label]


@dataclass
class Sample:
    """Every series read at one instant, keyed by metric name then by label set.

    `missing` maps a metric family prefix (e.g. "node_nf_conntrack_") or an exact
    metric name to the reason it could not be read, so that a View can say "cannot
    read /proc/net/stat/nf_conntrack: no such file" instead of answering nothing.
    """

    series: dict[str, dict[LabelKey, float]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    wrap32: set[str] = field(default_factory=set)
    taken_at: float = field(default=0.0, compare=False)

    def add(self, name: str, labels: Mapping[str, str] | LabelKey | None, value: float) -> None:
        key = labels if isinstance(labels, tuple) else label_key(labels)
        self.series.setdefault(name, {})[key] = float(value)

    def extend(self, points: Iterable[tuple[str, Mapping[str, str] | None, float]]) -> None:
        for name, labels, value in points:
            self.add(name, labels, value)


def _matches(key: LabelKey, match: Mapping[str, str]) -> bool:
    if not match:
        return True
    labels = dict(key)
    return all(labels.get(k) == v for k, v in match.items())


def counter_increase(before: float, after: float, wraps_at_32_bits: bool = False) -> float:
    """Increase of a counter between two reads, never negative.

    A decrease is a wrap for 32-bit kernel counters (softnet_stat) and otherwise a
    reset (interface re-created, module reloaded), counted from zero as Prometheus
    does in rate().
    """
    if after >= before:
        return after - before
    if wraps_at_32_bits and before < WRAP_32 and after < WRAP_32:
        return after + WRAP_32 - before
    return after


class View:
    """The interface checks use. Sources subclass it."""

    source: str = ""
    interval_s: float | None = None
    inventory: Inventory | None = None
    has_history: bool = False

    def has(self, metric: str) -> bool:
        raise NotImplementedError

    def why_missing(self, metric: str) -> str:
        """Why `metric` has no series (file unreadable, collector off...), for "could not judge"."""
        raise NotImplementedError

    def rate(self, metric: str, **match: str) -> list[Point]:
        """Per-second rate of a counter over the window, per label set."""
        raise NotImplementedError

    def gauge(self, metric: str, **match: str) -> list[Point]:
        """Latest value per label set."""
        raise NotImplementedError

    def peak(self, metric: str, *, kind: str = "gauge", **match: str) -> list[Point]:
        """Worst value over the lookback; a two-sample source has only "now"."""
        return self.rate(metric, **match) if kind == "rate" else self.gauge(metric, **match)

    @property
    def problems(self) -> list[str]:
        """Every "cannot read X: why" the source met, for the report."""
        return []

    # Conveniences built on the primitives above.
    def rate_sum(self, metric: str, **match: str) -> float | None:
        points = self.rate(metric, **match)
        return sum(p.value for p in points) if points else None

    def gauge_value(self, metric: str, **match: str) -> float | None:
        points = self.gauge(metric, **match)
        return points[0].value if points else None

    def missing(self, *metrics: str) -> str | None:
        """The first reason one of `metrics` cannot be answered, or None if all can."""
        for metric in metrics:
            if not self.has(metric):
                return self.why_missing(metric)
        return None


class SampleView(View):
    """A View from two samples of the same host `interval_s` seconds apart."""

    def __init__(
        self,
        first: Sample,
        second: Sample,
        interval_s: float,
        *,
        source: str,
        inventory: Inventory | None = None,
        problems: list[str] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.first = first
        self.second = second
        self.interval_s = interval_s
        self.source = source
        self.inventory = inventory
        self._problems = problems or []
        self.meta = meta or {}

    @property
    def problems(self) -> list[str]:
        return list(self._problems)

    def has(self, metric: str) -> bool:
        return bool(self.second.series.get(metric))

    def why_missing(self, metric: str) -> str:
        if self.has(metric):
            return ""
        best = ""
        for prefix in self.second.missing:
            if metric.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        if best:
            return self.second.missing[best]
        return f"{metric} is not exposed by {self.source or 'this source'}"

    def gauge(self, metric: str, **match: str) -> list[Point]:
        series = self.second.series.get(metric, {})
        return [Point(dict(key), value) for key, value in series.items() if _matches(key, match)]

    def rate(self, metric: str, **match: str) -> list[Point]:
        after = self.second.series.get(metric, {})
        before = self.first.series.get(metric, {})
        wraps = metric in self.second.wrap32
        points = []
        for key, value in after.items():
            if not _matches(key, match):
                continue
            if key not in before:
                # Appeared between the samples: no rate can be known for it yet.
                continue
            increase = counter_increase(before[key], value, wraps)
            points.append(Point(dict(key), increase / self.interval_s if self.interval_s else math.nan))
        return points

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampleView):
            return NotImplemented
        return (
            self.first == other.first
            and self.second == other.second
            and math.isclose(self.interval_s, other.interval_s)
            and self.inventory == other.inventory
            and self._problems == other._problems
        )

    __hash__ = None  # type: ignore[assignment]
