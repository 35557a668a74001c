"""The whole live source against the real node_exporter, on the same bytes.

The live host is captured to a directory; node_exporter then reads the second sample
of that capture (`--path.procfs`/`--path.sysfs`), and every series netdoctor built that
node_exporter also exposes must have the same value. Per-file differential tests live
beside each parser; this one proves the wiring (collector -> names -> labels) end to end.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from netdoctor.sources.capture import CaptureSource, write_capture
from netdoctor.sources.live import LiveSource
from tests.node_exporter import LIVE_SOURCE_ARGS, LIVE_SOURCE_COLLECTORS, node_exporter, scrape

# Families both expose that must overlap; a family node_exporter has and we lack fails the test.
FAMILIES = [
    "node_network_receive_bytes_total",
    "node_netstat_Tcp_OutSegs",
    "node_sockstat_TCP_inuse",
    "node_softnet_processed_total",
    "node_cpu_seconds_total",
    "node_interrupts_total",
    "node_memory_MemTotal_bytes",
    "node_context_switches_total",
]


def compare(capture_dir: Path) -> tuple[int, list[str]]:
    view = CaptureSource(capture_dir).view()
    ours = {(name, key): value for name, series in view.second.series.items() for key, value in series.items()}
    sysfs = capture_dir / "sample2" / "sys"
    collectors = list(LIVE_SOURCE_COLLECTORS)
    if not (sysfs / "class" / "net").is_dir():
        # A capture made in a namespace with no physical NIC has no sysfs tree, and node_exporter's cpu and
        # netclass collectors refuse to start without one: give cpu the host's /sys (it takes the seconds from
        # /proc/stat) and leave netclass out, as netdoctor has nothing of it either.
        sysfs = Path("/sys")
        collectors = [c for c in LIVE_SOURCE_COLLECTORS if c != "netclass"]
    with node_exporter(
        collectors, procfs=capture_dir / "sample2" / "proc", sysfs=sysfs, extra_args=LIVE_SOURCE_ARGS
    ) as url:
        theirs = scrape(url)
    common = set(ours) & set(theirs)
    mismatches = [
        f"{name}{dict(key)}: netdoctor {ours[(name, key)]} node_exporter {theirs[(name, key)]}"
        for name, key in sorted(common)
        if not math.isclose(ours[(name, key)], theirs[(name, key)], rel_tol=1e-9, abs_tol=1e-9)
    ]
    their_names = {name for name, _ in theirs}
    our_names = {name for name, _ in ours}
    for family in FAMILIES:
        if family in their_names:
            assert family in our_names, f"node_exporter has {family}, netdoctor does not"
    return len(common), mismatches


def test_live_host_matches_node_exporter(tmp_path: Path) -> None:
    source = LiveSource(interval_s=0.2)
    first, second = source.samples()
    capture = write_capture(tmp_path / "live", first, second, source.meta(first, second))
    common, mismatches = compare(capture)
    assert common > 200
    assert mismatches == []


@pytest.mark.parametrize(
    "scenario",
    sorted(
        p.name for p in (Path(__file__).parent.parent / "fixtures" / "proc").glob("*") if (p / "meta.json").exists()
    ),
)
def test_scenario_fixtures_match_node_exporter(scenario: str) -> None:
    capture = Path(__file__).parent.parent / "fixtures" / "proc" / scenario
    common, mismatches = compare(capture)
    assert common > 50
    assert mismatches == []
