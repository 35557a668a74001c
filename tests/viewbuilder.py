"""Build a SampleView from two small dicts of series, for unit tests of checks.

Scenario tests use real captures under tests/fixtures/proc/; this builder is for the
edge cases a capture cannot show compactly (exact threshold boundaries, one metric
missing).
"""

from __future__ import annotations

from collections.abc import Mapping

from netdoctor.sources.inventory import Inventory
from netdoctor.view import Sample, SampleView, label_key

SeriesSpec = Mapping[str, Mapping[tuple[tuple[str, str], ...] | frozenset | str, float] | float]


def _sample(spec: SeriesSpec, missing: Mapping[str, str] | None) -> Sample:
    sample = Sample(missing=dict(missing or {}))
    for name, values in spec.items():
        if isinstance(values, (int, float)):
            sample.add(name, {}, values)
            continue
        for labels, value in values.items():
            if isinstance(labels, str):  # "cpu=0,mode=softirq"
                pairs = dict(item.split("=", 1) for item in labels.split(",") if item)
                sample.add(name, label_key(pairs), value)
            else:
                sample.add(name, label_key(dict(labels)), value)
    return sample


def make_view(
    before: SeriesSpec,
    after: SeriesSpec,
    interval_s: float = 10.0,
    *,
    inventory: Inventory | None = None,
    missing: Mapping[str, str] | None = None,
) -> SampleView:
    """`before`/`after`: {"metric": value} or {"metric": {"device=eth0": value, ...}}."""
    return SampleView(
        _sample(before, missing),
        _sample(after, missing),
        interval_s,
        source="test",
        inventory=inventory,
    )
