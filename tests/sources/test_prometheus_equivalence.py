"""Path equivalence: Prometheus scraping node_exporter over a fixture == the capture source.

A real node_exporter reads a tree that starts as the fixture's sample1 and is switched
to sample2; a real Prometheus scrapes it every `interval_s` (the capture's own interval).
Diagnosing from Prometheus at the first scrape of sample2, over a window that holds
exactly one scrape of each sample, must give the same findings as `diagnose --from` on
the same capture, for every check that node_exporter can feed (checks that need live
inventories — per-destination socket tuples — cannot judge on Prometheus, and say so:
they are compared on that, not on their findings).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from netdoctor.engine import diagnose, load_checks
from netdoctor.model import EntityKind, Status
from netdoctor.sources.capture import CaptureSource
from netdoctor.sources.prometheus import _SYSFS_ONLY as SYSFS_ONLY
from netdoctor.sources.prometheus import PrometheusSource, diagnose_instance, needs_of
from tests.conftest import SCENARIOS, require
from tests.node_exporter import LIVE_SOURCE_ARGS, LIVE_SOURCE_COLLECTORS, node_exporter
from tests.prom import prometheus_server

pytestmark = pytest.mark.real

COLLECTORS = list(LIVE_SOURCE_COLLECTORS)
EXTRA = list(LIVE_SOURCE_ARGS)
# Checks whose judgement rests on live-only inventories (socket tuples, owners).
INVENTORY_ONLY = {"ephemeral_ports"}


def _query(url: str, expr: str, at: float | None = None) -> list[dict]:
    params = {"query": expr} | ({"time": f"{at:.3f}"} if at else {})
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as response:
        return json.load(response)["data"]["result"]


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for Prometheus to scrape")
        time.sleep(0.2)


def _sysfs_only(finding) -> bool:
    """A finding whose key evidence node_exporter does not export (sysfs NIC statistics)."""
    return bool(finding.evidence) and bool(SYSFS_ONLY.match(finding.evidence[0].metric))


def _signature(findings) -> dict[str, tuple]:
    """Per check: its status, worst severity, and the interfaces/CPUs it names.

    Listener, socket, process and destination entities come from live-only socket
    inventories; from Prometheus the same problem is reported for the host, so those
    entities are left out of the comparison (the severity still must match).
    """
    out: dict[str, tuple] = {}
    for check in sorted({f.check for f in findings}):
        own = [f for f in findings if f.check == check and not _sysfs_only(f)]
        if not own:
            continue
        problems = [f for f in own if f.status is Status.PROBLEM]
        if check in INVENTORY_ONLY and not problems:
            continue
        status = "problem" if problems else own[0].status.value
        worst = max(f.severity for f in own).label
        entities = sorted({str(f.entity) for f in problems if f.entity.kind in (EntityKind.INTERFACE, EntityKind.CPU)})
        out[check] = (status, worst, entities)
    return out


@pytest.mark.parametrize(
    "scenario",
    [
        "conntrack_full",
        "retransmit_storm",
        "nic_errors",
        "listen_overflow",
        "socket_buffers",
        "healthy",
        "softirq_saturation",
    ],
)
def test_prometheus_path_gives_the_capture_diagnosis(scenario: str) -> None:
    fixture = SCENARIOS / scenario
    require((fixture / "sample2").is_dir(), f"fixture {fixture} is missing")
    meta = json.loads((fixture / "meta.json").read_text())
    interval_ms = int(round(float(meta["interval_s"]) * 1000))
    checks = load_checks(use_entry_points=False)
    expected = diagnose(CaptureSource(fixture).view(), checks)

    with tempfile.TemporaryDirectory(prefix="netdoctor-equiv-") as tmp:
        root = Path(tmp)
        # `tree` is a symlink swapped atomically, so no scrape ever sees a half-switched tree.
        tree = root / "tree"
        for name in ("sample1", "sample2"):
            shutil.copytree(fixture / name, root / name, symlinks=True)
        tree.symlink_to(root / "sample1")
        with node_exporter(COLLECTORS, tree / "proc", tree / "sys", EXTRA) as metrics_url:
            target = urllib.parse.urlparse(metrics_url).netloc
            with prometheus_server(root / "data", scrape_targets=[target], scrape_interval=f"{interval_ms}ms") as prom:
                scrapes = f'count_over_time(up{{instance="{target}"}}[1h])'
                _wait_for(lambda: _query(prom, scrapes) and float(_query(prom, scrapes)[0]["value"][1]) >= 2)
                # Switch the tree to sample2 between two scrapes (rename over a symlink is atomic).
                (root / "next").symlink_to(root / "sample2")
                os.replace(root / "next", tree)
                switched = float(_query(prom, scrapes)[0]["value"][1])
                _wait_for(lambda: float(_query(prom, scrapes)[0]["value"][1]) >= switched + 2)
                # The first scrape that saw sample2: node_time_seconds is not in the tree, so use
                # the sample's cpu counters (they differ between samples on any real capture).
                raw = _query(prom, f'node_cpu_seconds_total{{instance="{target}"}}[1h]')
                values = sorted(raw[0]["values"], key=lambda p: float(p[0]))
                changes = [float(t) for (t, v), (_, prev) in zip(values[1:], values, strict=False) if v != prev]
                require(bool(changes), "the two samples have the same cpu counters")
                at = changes[0]
                window = 1.5 * interval_ms / 1000
                source = PrometheusSource(prom, target, at=at, window_s=window, lookback_s=window)
                got = diagnose_instance(source, checks)
                prom_view = source.view(needs_of(checks.specs))

    assert _signature(got.all_findings()) == _signature(expected.all_findings())
    for finding in expected.all_findings():
        if _sysfs_only(finding):  # not comparable: Prometheus must say why it cannot see it
            assert "does not export it" in prom_view.why_missing(finding.evidence[0].metric)
    for check in INVENTORY_ONLY:
        on_prom = [f for f in got.all_findings() if f.check == check]
        assert on_prom and all(f.status is Status.CANNOT_JUDGE for f in on_prom), on_prom
