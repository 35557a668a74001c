"""nic_errors: error and drop ratios, crc/frame, ring overflow with its fix, carrier flapping."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netdoctor.checks import nic_errors

from netdoctor.causes import NIC_DROPS, NIC_ERRORS, NIC_FLAPPING, RING_OVERFLOW
from netdoctor.model import EntityKind, Severity, Status
from netdoctor.sources.inventory import Inventory, NicInfo
from netdoctor.view import Sample, SampleView
from tests.conftest import require_binary, require_root
from tests.node_exporter import parse_exposition
from tests.viewbuilder import make_view

NET = "node_network_"
DROPS_TX = f"{NET}transmit_drop_total"
BASE = [
    "receive_packets",
    "transmit_packets",
    "receive_errs",
    "transmit_errs",
    "receive_drop",
    "transmit_drop",
]


def _view(increases: dict[str, dict[str, float]], interval: float = 10.0, **kw):
    """increases: {device: {"receive_packets": n, ...}} over the window; absent base counters rise by 0."""
    before: dict = {}
    after: dict = {}
    for device, counters in increases.items():
        for short in [*BASE, *(k for k in counters if k not in BASE)]:
            name = f"{NET}{short}_total"
            before.setdefault(name, {})[f"device={device}"] = 1000.0
            after.setdefault(name, {})[f"device={device}"] = 1000.0 + counters.get(short, 0.0)
    return make_view(before, after, interval, **kw)


def run(view, **overrides):
    return nic_errors.run(view, {**nic_errors.THRESHOLDS, **overrides})


def only(findings, tag):
    return [f for f in findings if tag in f.tags]


def test_error_ratio_boundaries():
    ok = run(_view({"eth0": {"receive_packets": 100_000, "receive_errs": 1_000}}))  # exactly 1%
    assert ok[0].status is Status.HEALTHY
    warn = run(_view({"eth0": {"receive_packets": 100_000, "receive_errs": 1_001}}))
    assert len(warn) == 1 and warn[0].severity is Severity.WARNING and NIC_ERRORS in warn[0].tags
    assert warn[0].entity.kind is EntityKind.INTERFACE and warn[0].entity.name == "eth0"
    crit = run(_view({"eth0": {"transmit_packets": 100_000, "transmit_errs": 5_001}}))
    assert crit[0].severity is Severity.CRITICAL and "tx errors" in crit[0].summary


def test_crc_errors_warn_below_the_ratio():
    findings = run(
        _view({"eth0": {"receive_packets": 1_000_000, "receive_errs": 20, "receive_crc_errors": 20}})
    )
    assert len(findings) == 1 and findings[0].severity is Severity.WARNING
    assert "cable" in findings[0].summary
    crc = next(e for e in findings[0].evidence if e.metric == "receive_crc_frame_errors")
    assert crc.value == 2.0


def test_errors_without_packets_count_as_100_percent():
    finding = run(_view({"eth0": {"receive_errs": 3}}))[0]
    assert finding.severity is Severity.CRITICAL and "100%" in finding.summary


def test_drop_ratio_with_packet_guard():
    # 2% exactly is ">= 2%": warns (netdata)
    at = run(_view({"eth0": {"receive_packets": 100_000, "receive_drop": 2_000}}))
    assert only(at, NIC_DROPS)[0].severity is Severity.WARNING
    under = run(_view({"eth0": {"receive_packets": 100_000, "receive_drop": 1_999}}))
    assert under[0].status is Status.HEALTHY
    crit = run(_view({"eth0": {"transmit_packets": 100_000, "transmit_drop": 10_000}}))
    assert only(crit, NIC_DROPS)[0].severity is Severity.CRITICAL
    # 50% of 9,000 packets (+ drops = 13,500 >= 10k) is judged; 50% of 6,000 (9,000) is not
    assert only(run(_view({"eth0": {"receive_packets": 9_000, "receive_drop": 4_500}})), NIC_DROPS)
    small = run(_view({"eth0": {"receive_packets": 6_000, "receive_drop": 2_999}}))
    assert small[0].status is Status.HEALTHY
    # an interface dropping everything it gets is judged
    assert only(run(_view({"eth0": {"receive_drop": 20_000}})), NIC_DROPS)


def test_ring_overflow_proposes_the_max_ring_from_inventory():
    inventory = Inventory(nics={"eth0": NicInfo(name="eth0", rings={"rx": 512, "rx_max": 4096, "tx": 512})})
    view = _view({"eth0": {"receive_packets": 1_000_000, "receive_missed_errors": 50}}, inventory=inventory)
    finding = only(run(view), RING_OVERFLOW)[0]
    assert finding.severity is Severity.WARNING
    assert "receive_missed_errors 5/s" in finding.summary
    fix = finding.fixes[0]
    assert fix.fix_id == "ring" and fix.params == {
        "interface": "eth0",
        "rx": 4096,
        "current_rx": 512,
        "rx_max": 4096,
    }
    assert fix.command == "netdoctor fix --ring eth0 --rx 4096"


def test_ring_overflow_without_room_or_inventory_has_no_fix():
    at_max = Inventory(nics={"eth0": NicInfo(name="eth0", rings={"rx": 4096, "rx_max": 4096})})
    for inventory in (at_max, None):
        view = _view({"eth0": {"receive_packets": 1_000, "receive_fifo": 1}}, inventory=inventory)
        finding = only(run(view), RING_OVERFLOW)[0]
        assert finding.fixes == []


def test_carrier_changes_are_flapping():
    finding = only(run(_view({"eth0": {"receive_packets": 10, "carrier_changes": 4}})), NIC_FLAPPING)[0]
    assert finding.severity is Severity.WARNING and "4 carrier changes" in finding.summary
    assert run(_view({"eth0": {"receive_packets": 10, "carrier_changes": 0}}))[0].status is Status.HEALTHY
    assert only(run(_view({"eth0": {"carrier_changes": 4}}), flap_changes=4), NIC_FLAPPING) == []


def test_only_lo_is_excluded():
    findings = run(
        _view({"lo": {"receive_errs": 50}, "veth1a": {"transmit_packets": 20_000, "transmit_drop": 5_000}})
    )
    assert [f.entity.name for f in findings] == ["veth1a"]


def test_healthy_names_what_it_could_not_see():
    finding = run(_view({"eth0": {"receive_packets": 5_000, "transmit_packets": 4_000}}))[0]
    assert finding.status is Status.HEALTHY
    assert "1 interfaces" in finding.summary and "carrier_changes_total" in finding.summary
    assert finding.evidence[0].value == 500.0


def test_missing_and_zero_traffic():
    missing = make_view({}, {}, missing={"node_network_": "cannot read /proc/net/dev"})
    assert run(missing)[0].status is Status.CANNOT_JUDGE and "/proc/net/dev" in run(missing)[0].summary
    assert run(_view({"eth0": {}}))[0].status is Status.HEALTHY
    only_lo = run(_view({"lo": {"receive_errs": 5}}))
    assert only_lo[0].status is Status.CANNOT_JUDGE


def test_hostile_values():
    nan = make_view(
        {f"{NET}{k}_total": {"device=eth0": math.nan} for k in BASE},
        {f"{NET}{k}_total": {"device=eth0": math.nan} for k in BASE},
    )
    assert run(nan)[0].status is Status.CANNOT_JUDGE
    huge = run(_view({"eth0": {"receive_packets": 1e18, "receive_errs": 1e17}}))[0]
    assert huge.severity is Severity.CRITICAL and math.isfinite(huge.magnitude)
    assert run(_view({"eth0": {"receive_errs": 5}}, interval=0.0))[0].status is Status.CANNOT_JUDGE


# --- real kernel, real node_exporter: a veth whose peer is down drops every packet sent to it ---------------


@contextmanager
def real_netns(tag: str) -> Iterator[str]:
    """A throwaway network namespace (lo up), always deleted."""
    require_root()
    require_binary("ip")
    name = f"ndchk-{tag}-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_netns(ns: str, *cmd: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True, text=True, input=stdin
    )
    return done.stdout


@contextmanager
def exporter_in(ns: str, collectors: list[str]) -> Iterator[Callable[[], Sample]]:
    """The real node_exporter inside `ns` (its /proc/net and a remounted /sys); yields a scrape -> Sample."""
    binary = require_binary("prometheus-node-exporter", "node_exporter")
    address = "127.0.0.1:19100"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, binary, f"--web.listen-address={address}", "--collector.disable-defaults"]
        + [f"--collector.{c}" for c in collectors],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    fetch = f"import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://{address}/metrics').read().decode())"

    def scrape() -> Sample:
        sample = Sample(taken_at=time.monotonic())
        for (name, labels), value in parse_exposition(in_netns(ns, sys.executable, "-c", fetch)).items():
            sample.add(name, labels, value)
        return sample

    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                scrape()
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield scrape
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def view_between(first: Sample, second: Sample) -> SampleView:
    return SampleView(first, second, second.taken_at - first.taken_at, source="node_exporter in a netns")


SEND_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[1])):
    s.sendto(b"x" * 64, ("10.77.0.2", 9))
"""


def test_real_veth_tx_drops_and_carrier_flaps():
    with real_netns("nicerr") as ns:
        ip = ["ip", "-n", ns]
        subprocess.run([*ip, "link", "add", "vA", "type", "veth", "peer", "name", "vB"], check=True)
        subprocess.run([*ip, "addr", "add", "10.77.0.1/24", "dev", "vA"], check=True)
        for dev in ("vA", "vB"):
            subprocess.run([*ip, "link", "set", dev, "up"], check=True)
        mac = in_netns(ns, "cat", "/sys/class/net/vB/address").strip()
        subprocess.run(
            [*ip, "neigh", "add", "10.77.0.2", "lladdr", mac, "dev", "vA", "nud", "permanent"], check=True
        )
        # Carrier comes up asynchronously after `link set up`: let it settle, or the "quiet" window below
        # would see the link-up as a carrier change (seen as a flake under load).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            states = [in_netns(ns, "cat", f"/sys/class/net/{d}/operstate").strip() for d in ("vA", "vB")]
            if states == ["up", "up"]:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        with exporter_in(ns, ["netdev", "netclass"]) as scrape:
            quiet = view_between(scrape(), scrape())
            assert run(quiet)[0].status is Status.HEALTHY
            first = scrape()
            subprocess.run([*ip, "link", "set", "vB", "down"], check=True)  # vA loses carrier
            in_netns(ns, sys.executable, "-c", SEND_UDP, "15000")
            second = scrape()
        view = view_between(first, second)
        findings = run(view)
        drops = only(findings, NIC_DROPS)
        assert [(f.entity.name, f.severity) for f in drops] == [("vA", Severity.CRITICAL)]
        tx_drops = next(e for e in drops[0].evidence if e.metric == DROPS_TX)
        assert tx_drops.value * view.interval_s >= 15_000  # every datagram, counted by the kernel
        flaps = only(findings, NIC_FLAPPING)
        assert {f.entity.name for f in flaps} >= {"vA"}
