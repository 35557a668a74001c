"""nic_saturation: bytes against bytes, per direction, virtual and unknown-speed interfaces skipped."""

from __future__ import annotations

import math
import re
import subprocess

from netdoctor.checks import nic_saturation
from netdoctor.checks._common import VIRTUAL_IFACE_REGEX

from netdoctor.causes import NIC_LINE_RATE
from netdoctor.model import EntityKind, Severity, Status
from netdoctor.sources.inventory import Inventory, NicInfo
from tests.checks.test_nic_errors import exporter_in, real_netns, view_between
from tests.viewbuilder import make_view

GBIT = 125_000_000.0  # 1 Gbit/s in bytes/s
RX = "node_network_receive_bytes_total"
TX = "node_network_transmit_bytes_total"
SPEED = "node_network_speed_bytes"


def _view(rx_rate: dict[str, float], tx_rate: dict[str, float], speeds: dict[str, float] | None, **kw):
    interval = 10.0
    devices = set(rx_rate) | set(tx_rate)
    before = {RX: {f"device={d}": 1e6 for d in devices}, TX: {f"device={d}": 1e6 for d in devices}}
    after = {
        RX: {f"device={d}": 1e6 + rx_rate.get(d, 0.0) * interval for d in devices},
        TX: {f"device={d}": 1e6 + tx_rate.get(d, 0.0) * interval for d in devices},
    }
    if speeds is not None:
        before[SPEED] = {f"device={d}": s for d, s in speeds.items()}
        after[SPEED] = {f"device={d}": s for d, s in speeds.items()}
    return make_view(before, after, interval, **kw)


def run(view, **overrides):
    return nic_saturation.run(view, {**nic_saturation.THRESHOLDS, **overrides})


def test_tx_at_95_percent_warns_with_bytes_not_bits():
    findings = run(_view({"eth0": 0.1 * GBIT}, {"eth0": 0.95 * GBIT}, {"eth0": GBIT}))
    assert len(findings) == 1
    finding = findings[0]
    assert finding.severity is Severity.WARNING
    assert finding.entity.kind is EntityKind.INTERFACE and finding.entity.name == "eth0"
    assert NIC_LINE_RATE in finding.tags
    assert "tx" in finding.summary and "95" in finding.summary
    ratio = next(e for e in finding.evidence if e.metric == "link_utilisation")
    assert math.isclose(ratio.value, 0.95)
    assert math.isclose(finding.magnitude, 0.95 / 0.90)


def test_rx_over_98_percent_is_critical_and_directions_are_separate():
    findings = run(_view({"eth0": 0.99 * GBIT}, {"eth0": 0.99 * GBIT}, {"eth0": GBIT}))
    assert [f.severity for f in findings] == [Severity.CRITICAL, Severity.CRITICAL]
    assert {f.evidence[2].labels["direction"] for f in findings} == {"rx", "tx"}


def test_rx_plus_tx_above_speed_is_fine_when_each_direction_is_under():
    # 80% each way = 160% of speed summed: full duplex, not saturated (the seed's mistake).
    findings = run(_view({"eth0": 0.8 * GBIT}, {"eth0": 0.8 * GBIT}, {"eth0": GBIT}))
    assert findings[0].status is Status.HEALTHY
    assert "80%" in findings[0].summary


def test_boundaries_just_under_and_just_over():
    under = run(_view({"eth0": 0.8999 * GBIT}, {}, {"eth0": GBIT}))
    assert under[0].status is Status.HEALTHY
    at = run(_view({"eth0": 0.90 * GBIT}, {}, {"eth0": GBIT}))
    assert at[0].status is Status.HEALTHY  # "> 90%", not ">="
    over = run(_view({"eth0": 0.9001 * GBIT}, {}, {"eth0": GBIT}))
    assert over[0].severity is Severity.WARNING
    crit_edge = run(_view({"eth0": 0.98 * GBIT}, {}, {"eth0": GBIT}))
    assert crit_edge[0].severity is Severity.WARNING


def test_thresholds_are_read_from_the_mapping():
    findings = run(_view({"eth0": 0.6 * GBIT}, {}, {"eth0": GBIT}), warn_ratio=0.5, crit_ratio=0.55)
    assert findings[0].severity is Severity.CRITICAL


def test_virtual_interfaces_are_excluded_by_default_and_regex_is_configurable():
    view = _view({"veth12ab": 2 * GBIT, "eth0": 0.1 * GBIT}, {}, {"veth12ab": GBIT, "eth0": GBIT})
    assert run(view)[0].status is Status.HEALTHY
    flagged = run(view, exclude_iface="^lo$")
    assert [f.entity.name for f in flagged] == ["veth12ab"]
    pattern = re.compile(VIRTUAL_IFACE_REGEX)
    assert all(pattern.match(n) for n in ("lo", "veth0", "br-1a2b", "docker0", "virbr0", "cali123"))
    assert all(pattern.match(n) for n in ("flannel.1", "cni0", "tun0", "tap3"))
    assert not any(pattern.match(n) for n in ("eth0", "ens5", "bond0", "eno1", "enp3s0f0", "lower"))


def test_unknown_speed_interface_is_named_not_judged():
    view = _view({"eth0": 0.5 * GBIT, "eth1": 5 * GBIT}, {}, {"eth0": GBIT, "eth1": -1})
    findings = run(view)
    assert findings[0].status is Status.HEALTHY
    assert "not judged" in findings[0].summary and "eth1" in findings[0].summary


def test_no_known_speed_at_all_cannot_judge():
    findings = run(_view({"eth0": GBIT}, {}, {"eth0": -1}))
    assert findings[0].status is Status.CANNOT_JUDGE
    absent = run(_view({"eth0": GBIT}, {}, None, missing={SPEED: "netclass collector disabled"}))
    assert absent[0].status is Status.CANNOT_JUDGE
    assert "netclass collector disabled" in absent[0].summary


def test_speed_from_inventory_when_series_absent():
    inventory = Inventory(nics={"eth0": NicInfo(name="eth0", speed_bytes=GBIT)})
    findings = run(_view({"eth0": 0.95 * GBIT}, {}, None, inventory=inventory))
    assert findings[0].severity is Severity.WARNING


def test_missing_byte_counters_cannot_judge():
    view = make_view(
        {}, {SPEED: {"device=eth0": GBIT}}, missing={"node_network_": "cannot read /proc/net/dev"}
    )
    findings = run(view)
    assert findings[0].status is Status.CANNOT_JUDGE
    assert "/proc/net/dev" in findings[0].summary


def test_zero_traffic_and_hostile_values():
    assert run(_view({"eth0": 0.0}, {"eth0": 0.0}, {"eth0": GBIT}))[0].status is Status.HEALTHY
    nan_speed = run(_view({"eth0": GBIT}, {}, {"eth0": math.nan}))
    assert nan_speed[0].status is Status.CANNOT_JUDGE
    huge = run(_view({"eth0": 1e18}, {}, {"eth0": GBIT}))
    assert huge[0].severity is Severity.CRITICAL and math.isfinite(huge[0].magnitude)
    zero_interval = make_view(
        {RX: {"device=eth0": 1}, TX: {"device=eth0": 1}},
        {RX: {"device=eth0": 5}, TX: {"device=eth0": 5}, SPEED: {"device=eth0": GBIT}},
        0.0,
    )
    assert run(zero_interval)[0].status is Status.CANNOT_JUDGE


def test_real_veth_speed_from_node_exporter():
    """Real kernel + node_exporter: veth reports 10 Gbit/s; excluded by default, judged when asked."""
    with real_netns("sat") as ns:
        subprocess.run(
            ["ip", "-n", ns, "link", "add", "vethA", "type", "veth", "peer", "name", "vethB"], check=True
        )
        for dev in ("vethA", "vethB"):
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        with exporter_in(ns, ["netdev", "netclass"]) as scrape:
            view = view_between(scrape(), scrape())
    assert run(view)[0].status is Status.CANNOT_JUDGE  # only lo and veth: nothing physical to judge
    finding = run(view, exclude_iface="^lo$")[0]
    assert finding.status is Status.HEALTHY
    speeds = {e.labels["device"]: e.value for e in finding.evidence}
    assert speeds == {"vethA": 1.25e9, "vethB": 1.25e9}  # 10000 Mb/s in bytes/s, no * 8
