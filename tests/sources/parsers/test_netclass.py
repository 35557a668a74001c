"""/sys/class/net/IFACE attributes and statistics named as node_exporter names them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.netclass import netclass_metrics, netstats_metrics
from tests.conftest import FIXTURES

KERNELS = FIXTURES / "kernels"


def attrs_of(kernel: str, iface: str) -> dict[str, str]:
    base = KERNELS / kernel / "sys" / "class" / "net" / iface
    return {path.name: path.read_text() for path in base.iterdir() if path.is_file()}


def stats_of(kernel: str, iface: str) -> dict[str, str]:
    base = KERNELS / kernel / "sys" / "class" / "net" / iface / "statistics"
    return {path.name: path.read_text() for path in base.iterdir()}


def values(metrics: list) -> dict[str, float]:
    return {name: value for name, labels, value in metrics if name != "node_network_info"}


def info(metrics: list) -> dict[str, str]:
    return next(labels for name, labels, _ in metrics if name == "node_network_info")


def test_6_1_mlx5_100g() -> None:
    metrics = netclass_metrics("ens1f0np0", attrs_of("6.1", "ens1f0np0"))
    got = values(metrics)
    assert got["node_network_speed_bytes"] == 12_500_000_000.0  # 100000 Mb/s
    assert got["node_network_up"] == 1.0
    assert got["node_network_mtu_bytes"] == 9000.0
    assert got["node_network_carrier_changes_total"] == 3.0
    assert got["node_network_carrier_up_changes_total"] == 2.0
    assert got["node_network_carrier_down_changes_total"] == 1.0
    assert got["node_network_flags"] == 4099.0  # 0x1003
    assert got["node_network_transmit_queue_length"] == 10000.0
    assert info(metrics) == {
        "device": "ens1f0np0",
        "address": "b8:ce:f6:01:02:03",
        "broadcast": "ff:ff:ff:ff:ff:ff",
        "duplex": "full",
        "ifalias": "storage",
        "operstate": "up",
    }
    assert all(labels["device"] == "ens1f0np0" for _, labels, _ in metrics)


def test_4_4_down_link_without_speed_and_old_counters() -> None:
    metrics = netclass_metrics("eth1", attrs_of("4.4", "eth1"))
    got = values(metrics)
    assert got["node_network_up"] == 0.0
    assert got["node_network_carrier"] == 0.0
    assert "node_network_speed_bytes" not in got  # EINVAL on a down link: absent
    assert "node_network_carrier_up_changes_total" not in got  # added in 4.16
    assert info(metrics)["duplex"] == ""
    assert info(metrics)["operstate"] == "down"


def test_unknown_speed_minus_one_is_absent() -> None:
    assert "node_network_speed_bytes" not in values(netclass_metrics("eth0", attrs_of("live-6.18", "eth0")))
    assert values(netclass_metrics("eth0", {"speed": "10000\n"}))["node_network_speed_bytes"] == 1.25e9
    assert values(netclass_metrics("eth0", {"speed": "0"}))["node_network_speed_bytes"] == 0.0


def test_nothing_readable_still_says_down() -> None:
    metrics = netclass_metrics("x", {})
    assert values(metrics) == {"node_network_up": 0.0}
    assert info(metrics)["operstate"] == ""


def test_netstats_detailed_errors_only() -> None:
    metrics = netstats_metrics("eth0", stats_of("4.4", "eth0"))
    got = values(metrics)
    assert got["node_network_receive_missed_errors_total"] == 18221.0
    assert got["node_network_receive_crc_errors_total"] == 3.0
    assert "node_network_receive_nohandler_total" not in got  # 4.4 has no rx_nohandler
    assert not any(name.endswith(("_bytes_total", "_packets_total", "_dropped_total")) for name in got)
    assert len(got) == 11
    live = values(netstats_metrics("eth0", stats_of("live-6.18", "eth0")))
    assert len(live) == 12
    assert live["node_network_transmit_carrier_errors_total"] == 0.0


def test_4_19_length_errors() -> None:
    got = values(netstats_metrics("ens1f0", stats_of("4.19", "ens1f0")))
    assert got["node_network_receive_length_errors_total"] == 7.0
    assert got["node_network_receive_nohandler_total"] == 2.0


@pytest.mark.parametrize(
    ("attrs", "message"),
    [({"mtu": "big"}, "mtu"), ({"flags": "0xzz"}, "flags"), ({"speed": ""}, "speed")],
)
def test_malformed(attrs: dict[str, str], message: str) -> None:
    with pytest.raises(ParseError, match=message):
        netclass_metrics("eth0", attrs)


def test_malformed_stats() -> None:
    with pytest.raises(ParseError, match="rx_crc_errors"):
        netstats_metrics("eth0", {"rx_crc_errors": "x"})
    with pytest.raises(ParseError, match="negative"):
        netstats_metrics("eth0", {"rx_crc_errors": "-1"})


NAMES = sorted(attrs_of("6.1", "ens1f0np0")) + ["rx_crc_errors", "tx_fifo_errors", "bogus"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), st.text(max_size=12) | st.integers(-5, 10**12).map(str)))
def test_fuzz(attrs: dict[str, str]) -> None:
    for produce in (netclass_metrics, netstats_metrics):
        try:
            produce("eth0", attrs)
        except ParseError:
            pass


def test_fixture_tree_is_plain_files() -> None:
    device = KERNELS / "6.1" / "sys" / "class" / "net" / "ens1f0np0" / "device"
    assert Path(device).is_dir() and not Path(device).is_symlink()
