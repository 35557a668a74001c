"""/proc/net/dev parser: fixtures of four kernels and this host, edge shapes, malformed input, fuzz."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.netdev import NETDEV_FIELDS, netdev_metrics, parse_netdev
from tests.conftest import FIXTURES
from tests.sources.parsers.fuzzing import assert_returns_or_parse_error, mutated

KERNELS = FIXTURES / "kernels"
KERNEL_DIRS = ["4.4", "4.19", "5.10", "6.1", "live-6.18"]
HEADER = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls"
    " carrier compressed\n"
)


def read(kernel: str) -> str:
    return (KERNELS / kernel / "proc" / "net" / "dev").read_text()


@pytest.mark.parametrize(
    ("kernel", "device", "expected"),
    [
        # 4.4: receive bytes of 11 digits join the colon ("  eth0:98234567123 ...")
        (
            "4.4",
            "eth0",
            {
                "receive_bytes": 98234567123,
                "receive_drop": 1523,
                "receive_multicast": 82011,
                "transmit_bytes": 45012334567,
                "transmit_packets": 120334511,
            },
        ),
        ("4.4", "bond0.100", {"receive_bytes": 1012345, "transmit_packets": 8012}),
        ("4.4", "veth3f1a2b4", {"receive_bytes": 712340921, "transmit_drop": 17}),
        ("4.4", "eth1", {"receive_errs": 3, "receive_frame": 3}),
        ("4.19", "br-3f2a1b4c5d6e", {"receive_bytes": 812340123, "transmit_bytes": 9123401234}),
        ("4.19", "flannel.1", {"transmit_drop": 42, "transmit_packets": 2000}),
        ("4.19", "ens5", {"receive_drop": 88231, "receive_packets": 612340123}),
        (
            "5.10",
            "enp3s0f0",
            {
                "receive_bytes": 18446744073709551,
                "receive_fifo": 3312,
                "receive_errs": 12,
                "transmit_bytes": 912340123456789,
            },
        ),
        ("5.10", "vxlan.calico", {"transmit_drop": 11}),
        ("5.10", "kube-ipvs0", dict.fromkeys(NETDEV_FIELDS, 0)),
        (
            "6.1",
            "ppp0",
            {"receive_errs": 1, "receive_frame": 1, "transmit_carrier": 1, "transmit_compressed": 0},
        ),
        ("6.1", "wg0", {"transmit_errs": 2, "transmit_packets": 23456}),
        ("6.1", "lo", {"receive_bytes": 123456, "transmit_bytes": 123456}),
    ],
)
def test_fixture_values(kernel: str, device: str, expected: dict[str, int]) -> None:
    counters = parse_netdev(read(kernel))[device]
    assert list(counters) == list(NETDEV_FIELDS)
    for field, value in expected.items():
        assert counters[field] == value, field


@pytest.mark.parametrize(
    ("kernel", "devices"),
    [
        ("4.4", ["lo", "eth0", "eth1", "bond0", "bond0.100", "docker0", "veth3f1a2b4"]),
        ("4.19", ["lo", "ens5", "docker0", "br-3f2a1b4c5d6e", "vethc1d2e3f", "flannel.1", "cni0"]),
        (
            "5.10",
            [
                "lo",
                "enp3s0f0",
                "enp3s0f1",
                "bond0",
                "cali1234abcd5",
                "tunl0",
                "vxlan.calico",
                "kube-ipvs0",
                "nodelocaldns",
            ],
        ),
        ("6.1", ["lo", "enp0s31f6", "wg0", "tailscale0", "br0", "virbr0", "vnet0", "ppp0"]),
    ],
)
def test_fixture_devices(kernel: str, devices: list[str]) -> None:
    assert list(parse_netdev(read(kernel))) == devices


def test_live_copy_has_loopback() -> None:
    assert "lo" in parse_netdev(read("live-6.18"))


def test_metrics_are_node_exporter_names() -> None:
    metrics = netdev_metrics(parse_netdev(read("4.4")))
    by_key = {(name, labels["device"]): value for name, labels, value in metrics}
    assert by_key[("node_network_receive_drop_total", "eth0")] == 1523.0
    assert by_key[("node_network_transmit_colls_total", "eth0")] == 0.0
    assert by_key[("node_network_receive_bytes_total", "lo")] == 3810294815.0
    assert len(metrics) == 7 * 16
    assert all(labels.keys() == {"device"} for _, labels, _ in metrics)


def test_header_only_is_no_interfaces() -> None:
    assert parse_netdev(HEADER) == {}


def test_u64_max_counter() -> None:
    line = "  eth0:18446744073709551615 1 0 0 0 0 0 0 2 3 0 0 0 0 0 0\n"
    assert parse_netdev(HEADER + line)["eth0"]["receive_bytes"] == 2**64 - 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "header"),
        ("eth0: 1 2 3\n", "header"),
        ("no pipe here\n face |bytes\n", "line 1"),
        (HEADER + "  eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", "line 3: no ':'"),
        (HEADER + "  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n", "15 counters"),
        (HEADER + "  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n", "17 counters"),
        (HEADER + "  eth0: 1 2 3 -4 5 6 7 8 9 10 11 12 13 14 15 16\n", "receive_drop"),
        (HEADER + "  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 1e3\n", "transmit_compressed"),
        (HEADER + "      : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", "interface name"),
        (HEADER + "a b: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", "interface name"),
        (
            HEADER + "  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n" * 2,
            "line 4: interface 'eth0' listed twice",
        ),
    ],
)
def test_malformed_raises_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_netdev(text)


# ------------------------------------------------------------------ fuzz

BASES = [read(kernel) for kernel in KERNEL_DIRS]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(BASES, words=["12"]))
def test_fuzz_returns_or_raises_parse_error(text: str) -> None:
    parsed = assert_returns_or_parse_error(parse_netdev, text)
    if parsed is None:
        return
    for device, counters in parsed.items():
        assert device and ":" not in device and not any(c.isspace() for c in device)
        assert list(counters) == list(NETDEV_FIELDS)
        assert all(isinstance(v, int) and v >= 0 for v in counters.values())
    assert len(netdev_metrics(parsed)) == 16 * len(parsed)


def test_fixture_dirs_exist() -> None:
    for kernel in KERNEL_DIRS:
        assert Path(KERNELS / kernel / "proc" / "net" / "dev").is_file(), kernel
