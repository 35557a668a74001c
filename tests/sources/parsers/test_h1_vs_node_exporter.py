"""Differential test: our netdev, netstat, sockstat and meminfo series against the real node_exporter 1.5.0.

For each kernel fixture folder, and for a fresh copy of this host's /proc files, node_exporter
and our parsers read the same bytes. Every series both produce must have the same value, and
we must produce every series node_exporter exposes for these collectors; the only series we
add are named and explained below.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from netdoctor.sources.parsers import Metric
from netdoctor.sources.parsers.meminfo import meminfo_metrics, parse_meminfo
from netdoctor.sources.parsers.netdev import netdev_metrics, parse_netdev
from netdoctor.sources.parsers.snmp import merge_netstat, netstat_metrics, parse_snmp, parse_snmp6
from netdoctor.sources.parsers.sockstat import parse_sockstat, sockstat_metrics
from tests.conftest import FIXTURES
from tests.node_exporter import Series, node_exporter, scrape, series_of

pytestmark = pytest.mark.real

KERNELS = FIXTURES / "kernels"
COLLECTORS = ["netdev", "netstat", "sockstat", "meminfo"]
NODE_EXPORTER_ARGS = [
    "--no-collector.netdev.netlink",
    "--collector.netstat.fields=.*",
    # Debian's build defaults to "^lo$"; upstream node_exporter keeps lo, and so do we.
    "--collector.netdev.device-exclude=",
]
FAMILIES = ("node_network_", "node_netstat_", "node_sockstat_", "node_memory_")
FILES = ("net/dev", "net/snmp", "net/netstat", "net/snmp6", "net/sockstat", "net/sockstat6", "meminfo")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def our_series(proc: Path) -> Series:
    """What netdoctor's parsers make of a procfs tree, keyed like `tests.node_exporter.scrape`."""

    def text(name: str) -> str | None:
        path = proc / name
        return path.read_text() if path.exists() else None

    metrics: list[Metric] = []
    metrics += netdev_metrics(parse_netdev(text("net/dev") or ""))
    snmp6 = text("net/snmp6")
    merged = merge_netstat(
        parse_snmp(text("net/netstat") or ""),
        parse_snmp(text("net/snmp") or ""),
        parse_snmp6(snmp6) if snmp6 is not None else None,
    )
    metrics += netstat_metrics(merged)
    for name, ipv6 in (("net/sockstat", False), ("net/sockstat6", True)):
        content = text(name)
        if content is not None:
            metrics += sockstat_metrics(parse_sockstat(content), ipv6=ipv6, page_size=PAGE_SIZE)
    metrics += meminfo_metrics(parse_meminfo(text("meminfo") or ""))
    return series_of(metrics)


def node_exporter_series(proc: Path) -> Series:
    with node_exporter(COLLECTORS, procfs=proc, extra_args=NODE_EXPORTER_ARGS) as url:
        scraped = scrape(url)
    for collector in COLLECTORS:
        assert scraped[("node_scrape_collector_success", (("collector", collector),))] == 1.0, collector
    return {key: value for key, value in scraped.items() if key[0].startswith(FAMILIES)}


def compare(proc: Path) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Assert agreement; return the series we produce that node_exporter does not."""
    theirs = node_exporter_series(proc)
    ours = our_series(proc)
    common = ours.keys() & theirs.keys()
    mismatched = {key: (ours[key], theirs[key]) for key in common if ours[key] != theirs[key]}
    assert not mismatched
    not_produced = theirs.keys() - ours.keys()
    assert not not_produced, f"node_exporter has series we do not produce: {sorted(not_produced)[:10]}"
    for family in FAMILIES:
        assert any(name.startswith(family) for name, _ in common), f"no {family} series compared"
    assert len(common) >= 0.9 * len(theirs)
    return ours.keys() - theirs.keys()


@pytest.mark.parametrize("kernel", ["4.4", "4.19", "5.10", "live-6.18"])
def test_fixture_matches_node_exporter_exactly(kernel: str) -> None:
    assert compare(KERNELS / kernel / "proc") == set()


def test_split_icmpmsg_is_where_we_differ() -> None:
    """6.1's /proc/net/snmp has 17 ICMP types, printed by the kernel as two IcmpMsg line pairs
    (16 + 1). node_exporter's parser keeps only the last pair; we keep all 17. Those first 16
    are the only series we have that it lacks."""
    extra = compare(KERNELS / "6.1" / "proc")
    first_pair = (
        "InType0 InType3 InType4 InType5 InType8 InType11 InType12 InType13 InType17"
        " OutType0 OutType3 OutType5 OutType8 OutType11 OutType12 OutType14"
    )
    assert extra == {(f"node_netstat_IcmpMsg_{field}", ()) for field in first_pair.split()}


def test_live_host_matches_node_exporter(tmp_path: Path) -> None:
    """This host's files, read once into a copy so that both sides see the same bytes."""
    proc = tmp_path / "proc"
    for name in FILES:
        source = Path("/proc") / name
        if source.exists():
            (proc / name).parent.mkdir(parents=True, exist_ok=True)
            (proc / name).write_bytes(source.read_bytes())
    assert compare(proc) == set()


def test_ipv6_disabled_tree(tmp_path: Path) -> None:
    """Without snmp6 and sockstat6 node_exporter still succeeds, and so do we, with no Ip6/TCP6 series."""
    proc = tmp_path / "proc"
    shutil.copytree(KERNELS / "5.10" / "proc", proc)
    (proc / "net" / "snmp6").unlink()
    (proc / "net" / "sockstat6").unlink()
    assert compare(proc) == set()
    names = {name for name, _ in our_series(proc)}
    assert "node_netstat_Tcp_RetransSegs" in names
    assert not any(name.startswith(("node_netstat_Ip6_", "node_sockstat_TCP6_")) for name in names)
