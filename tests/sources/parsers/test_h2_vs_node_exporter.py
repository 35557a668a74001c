"""Differential test: softnet, conntrack, stat, interrupts and netclass series against node_exporter 1.5.0.

node_exporter (collectors softnet, conntrack, cpu, stat, interrupts, netclass) and our parsers
read the same bytes: each kernel fixture folder, and a fresh copy of this host's files. Every
series both produce must have the same value, and the overlap must cover every family.

Known node_exporter 1.5.0 labelling faults, which netdoctor does not copy (it labels by the
real CPU id) and this test undoes before comparing, so that the values are still checked:
- softnet: `cpu` is the row number, but rows are online CPUs only (the 5.10+ index column says
  which CPU a row is); with CPU 2 offline, CPU 3's row is labelled "2".
- interrupts: `cpu` is the column position; /proc/interrupts has columns for online CPUs only.
- cpu: procfs 0.8 keeps CPUs in a slice, so an offline CPU gets all-zero series.
Run with --collector.netclass.ignore-invalid-speed: 1.5.0 otherwise exports speed -1 Mb/s as
-125000 bytes/s; netdoctor, like node_exporter 2.x, leaves the series out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from netdoctor.errors import ParseError
from netdoctor.sources.parsers import Metric
from netdoctor.sources.parsers.conntrack import (
    conntrack_metrics,
    conntrack_stat_metrics,
    parse_conntrack_stat,
)
from netdoctor.sources.parsers.cpustat import online_cpus, parse_stat, stat_metrics
from netdoctor.sources.parsers.interrupts import interrupts_metrics, parse_interrupts
from netdoctor.sources.parsers.netclass import netclass_metrics, netstats_metrics
from netdoctor.sources.parsers.softirqs import parse_softirqs, softirqs_metrics
from netdoctor.sources.parsers.softnet import parse_softnet, softnet_metrics
from netdoctor.sources.parsers.sysctl import parse_int
from tests.conftest import FIXTURES
from tests.node_exporter import Series, node_exporter, scrape, series_of

pytestmark = pytest.mark.real

KERNELS = FIXTURES / "kernels"
KERNEL_DIRS = ["4.4", "4.19", "5.10", "6.1", "live-6.18"]
COLLECTORS = ["softnet", "conntrack", "cpu", "stat", "interrupts", "netclass"]
NODE_EXPORTER_ARGS = ["--collector.stat.softirq", "--collector.netclass.ignore-invalid-speed"]
PROC_FILES = (
    "net/softnet_stat",
    "net/stat/nf_conntrack",
    "stat",
    "softirqs",
    "interrupts",
    "sys/net/netfilter/nf_conntrack_count",
    "sys/net/netfilter/nf_conntrack_max",
)
FAMILIES = (
    "node_softnet_",
    "node_nf_conntrack_",
    "node_cpu_seconds_total",
    "node_cpu_guest_seconds_total",
    "node_intr_total",
    "node_context_switches_total",
    "node_forks_total",
    "node_boot_time_seconds",
    "node_procs_",
    "node_softirqs_total",
    "node_interrupts_total",
    "node_network_",
)
# Series we add that node_exporter 1.5.0 does not have (newer node_exporter, or netdoctor's own).
OURS_ONLY_PREFIXES = (
    "node_softnet_cpu_collision_total",  # newer node_exporter softnet
    "node_softnet_received_rps_total",
    "node_softnet_flow_limit_count_total",
    "node_softnet_backlog_len",
    "netdoctor_nf_conntrack_stat_",  # per-CPU conntrack stats: no node_exporter form
    "node_softirqs_functions_total",  # newer node_exporter softirqs collector
    "node_network_receive_",  # sysfs statistics; node_exporter's netdev detailed metrics
    "node_network_transmit_",  # (node_network_transmit_queue_length is netclass: compared)
)

Key = tuple[str, tuple[tuple[str, str], ...]]


def _text(root: Path, rel: str) -> str | None:
    path = root / rel
    return path.read_text() if path.is_file() else None


def our_series(root: Path) -> Series:
    proc = root / "proc"
    metrics: list[Metric] = []
    stat = parse_stat(_text(proc, "stat") or "")
    metrics += stat_metrics(stat)
    metrics += softnet_metrics(parse_softnet(_text(proc, "net/softnet_stat") or "", online_cpus(stat)))
    conntrack_stat = _text(proc, "net/stat/nf_conntrack")
    if conntrack_stat is not None:
        metrics += conntrack_stat_metrics(parse_conntrack_stat(conntrack_stat))
    count = _text(proc, "sys/net/netfilter/nf_conntrack_count")
    limit = _text(proc, "sys/net/netfilter/nf_conntrack_max")
    if count is not None and limit is not None:
        metrics += conntrack_metrics(parse_int(count), parse_int(limit))
    metrics += softirqs_metrics(parse_softirqs(_text(proc, "softirqs") or ""))
    metrics += interrupts_metrics(parse_interrupts(_text(proc, "interrupts") or ""))
    net = root / "sys" / "class" / "net"
    for iface_dir in sorted(net.iterdir()) if net.is_dir() else []:
        attrs = {path.name: path.read_text() for path in iface_dir.iterdir() if path.is_file()}
        metrics += netclass_metrics(iface_dir.name, attrs)
        statistics = iface_dir / "statistics"
        if statistics.is_dir():
            metrics += netstats_metrics(iface_dir.name, {p.name: p.read_text() for p in statistics.iterdir()})
    return series_of(metrics)


def _relabel_cpu(key: Key, mapping: dict[str, str]) -> Key:
    name, labels = key
    return name, tuple(sorted((k, mapping.get(v, v) if k == "cpu" else v) for k, v in labels))


def node_exporter_series(root: Path) -> Series:
    """node_exporter's series for our families, with its 1.5.0 CPU labelling faults undone."""
    with node_exporter(COLLECTORS, procfs=root / "proc", sysfs=root / "sys", extra_args=NODE_EXPORTER_ARGS) as url:
        scraped = scrape(url)
    for collector in COLLECTORS:
        assert scraped[("node_scrape_collector_success", (("collector", collector),))] == 1.0, collector
    online = online_cpus(parse_stat((root / "proc" / "stat").read_text()))
    positional = {str(position): str(cpu) for position, cpu in enumerate(online)}
    fixed: Series = {}
    for key, value in scraped.items():
        name, labels = key
        if not name.startswith(FAMILIES):
            continue
        cpu = dict(labels).get("cpu")
        if name.startswith(("node_softnet_", "node_interrupts_total")):
            key = _relabel_cpu(key, positional)
        elif name.startswith("node_cpu_") and cpu is not None and int(cpu) not in online:
            assert value == 0.0, f"{key}: an offline CPU should only have procfs's zero padding"
            continue
        fixed[key] = value
    return fixed


def compare(root: Path) -> tuple[set[Key], set[Key]]:
    """Assert equal values on the overlap; return (ours only, theirs only)."""
    ours, theirs = our_series(root), node_exporter_series(root)
    common = ours.keys() & theirs.keys()
    mismatches = {key: (ours[key], theirs[key]) for key in common if ours[key] != theirs[key]}
    assert not mismatches, mismatches
    for family in FAMILIES:
        if family == "node_nf_conntrack_" and not (root / "proc/net/stat/nf_conntrack").exists():
            continue
        assert any(name.startswith(family) for name, _ in common), f"no {family}* series compared"
    return ours.keys() - theirs.keys(), theirs.keys() - ours.keys()


def assert_only_expected_differences(ours_only: set[Key], theirs_only: set[Key]) -> None:
    unexpected_ours = {key for key in ours_only if not key[0].startswith(OURS_ONLY_PREFIXES)}
    assert not unexpected_ours, f"we produce series node_exporter does not: {sorted(unexpected_ours)}"
    # node_exporter series we do not produce: none (ERR/MIS rows are skipped by both).
    assert not theirs_only, f"node_exporter has series we lack: {sorted(theirs_only)}"


@pytest.mark.parametrize("kernel", KERNEL_DIRS)
def test_kernel_fixture(kernel: str) -> None:
    ours_only, theirs_only = compare(KERNELS / kernel)
    assert_only_expected_differences(ours_only, theirs_only)


def test_6_1_offline_cpu_values_land_on_the_real_cpu() -> None:
    """The relabelling above is not a no-op: CPU 3's softnet row is node_exporter's cpu="2"."""
    root = KERNELS / "6.1"
    with node_exporter(COLLECTORS, procfs=root / "proc", sysfs=root / "sys", extra_args=NODE_EXPORTER_ARGS) as url:
        scraped = scrape(url)
    ours = our_series(root)
    assert (
        scraped[("node_softnet_processed_total", (("cpu", "2"),))]
        == ours[("node_softnet_processed_total", (("cpu", "3"),))]
    )
    assert ("node_softnet_processed_total", (("cpu", "2"),)) not in ours


def _copy_host(target: Path) -> Iterator[str]:
    """Copy this host's files (one read each), yield what could not be read."""
    for rel in PROC_FILES:
        source = Path("/proc") / rel
        try:
            text = source.read_text()
        except OSError as exc:
            yield f"/proc/{rel}: {exc.strerror}"
            continue
        (target / "proc" / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / "proc" / rel).write_text(text)
    for iface in Path("/sys/class/net").iterdir():
        if not iface.is_dir():
            continue  # bonding_masters
        destination = target / "sys" / "class" / "net" / iface.name
        (destination / "statistics").mkdir(parents=True)
        for source in list(iface.iterdir()) + list((iface / "statistics").iterdir()):
            if not source.is_file() or source.name == "uevent":
                continue
            try:
                text = source.read_text()
            except OSError:
                continue  # EINVAL (speed of a down link) and friends: unreadable, as for node_exporter
            relative = source.relative_to(iface)
            (destination / relative).write_text(text)
        (destination / "device").mkdir(exist_ok=True)


def test_this_host(tmp_path: Path) -> None:
    unreadable = list(_copy_host(tmp_path))
    assert all("nf_conntrack" in problem for problem in unreadable), unreadable
    try:
        ours_only, theirs_only = compare(tmp_path)
    except ParseError as exc:
        pytest.fail(f"cannot parse this host's files: {exc}")
    assert_only_expected_differences(ours_only, theirs_only)
    assert any(name == "node_network_up" for name, _ in ours_only | set(our_series(tmp_path)))
