"""Build a SampleView from two small dicts of series, for unit tests of checks.

Scenario tests use real captures under tests/fixtures/proc/; this builder is for the
edge cases a capture cannot show compactly (exact threshold boundaries, one metric
missing). `host_netstat_sample()` is the other end: this host's real counters, for the
real-kernel tests of checks that read them.
"""

from __future__ import annotations

from collections.abc import Mapping

from netdoctor.sources.inventory import Inventory
from netdoctor.sources.parsers.snmp import merge_netstat, netstat_metrics, parse_snmp
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


def host_netstat_sample() -> Sample:
    """This host's `node_netstat_*` counters now (/proc/net/netstat and /proc/net/snmp), as the live source
    names them: take one before and one after making the kernel count something."""
    with open("/proc/net/netstat") as netstat, open("/proc/net/snmp") as snmp:
        counters = merge_netstat(parse_snmp(netstat.read()), parse_snmp(snmp.read()))
    sample = Sample()
    sample.extend(netstat_metrics(counters))
    return sample
