"""/proc/net/snmp, /proc/net/netstat and /proc/net/snmp6 parsers: kernel fixtures, malformed input, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.snmp import merge_netstat, netstat_metrics, parse_snmp, parse_snmp6
from tests.conftest import FIXTURES
from tests.sources.parsers.fuzzing import assert_returns_or_parse_error, mutated

KERNELS = FIXTURES / "kernels"
KERNEL_DIRS = ["4.4", "4.19", "5.10", "6.1", "live-6.18"]


def read(kernel: str, name: str) -> str:
    return (KERNELS / kernel / "proc" / "net" / name).read_text()


# ------------------------------------------------------------------ /proc/net/snmp


@pytest.mark.parametrize(
    ("kernel", "forwarding", "curr_estab", "retrans", "listen_overflows", "rcvbuf_errors"),
    [
        ("4.4", 2, 312, 412331, 18234, 3312),
        ("4.19", 1, 1843, 9123401, 0, 0),
        ("5.10", 1, 23412, 41234012, 1234567, 912000),
        ("6.1", 1, 17, 123, 0, 0),
    ],
)
def test_fixture_key_counters(
    kernel: str, forwarding: int, curr_estab: int, retrans: int, listen_overflows: int, rcvbuf_errors: int
) -> None:
    snmp = parse_snmp(read(kernel, "snmp"))
    netstat = parse_snmp(read(kernel, "netstat"))
    assert snmp["Ip"]["Forwarding"] == forwarding
    assert snmp["Ip"]["DefaultTTL"] == 64
    assert snmp["Tcp"]["MaxConn"] == -1
    assert snmp["Tcp"]["RtoMin"] == 200
    assert snmp["Tcp"]["CurrEstab"] == curr_estab
    assert snmp["Tcp"]["RetransSegs"] == retrans
    assert snmp["Udp"]["RcvbufErrors"] == rcvbuf_errors
    assert netstat["TcpExt"]["ListenOverflows"] == listen_overflows


@pytest.mark.parametrize(
    ("kernel", "present", "absent"),
    [
        # prequeue and FACK counters existed in 4.4, gone by 4.19
        ("4.4", {"PAWSPassive", "TCPPrequeued", "TCPFACKReorder", "TCPForwardRetrans"}, {"TCPAckCompressed"}),
        ("4.19", {"TCPAckCompressed", "TCPWqueueTooBig"}, {"TCPPrequeued", "TCPBacklogCoalesce"}),
        ("5.10", {"TCPBacklogCoalesce", "TCPDSACKIgnoredDubious"}, {"TCPMigrateReqSuccess"}),
        ("6.1", {"TCPMigrateReqSuccess", "TCPMigrateReqFailure"}, {"TCPPLBRehash", "TCPAOGood"}),
        ("live-6.18", {"TCPPLBRehash", "TCPAOGood"}, {"PAWSPassive"}),
    ],
)
def test_tcpext_field_set_follows_kernel(kernel: str, present: set[str], absent: set[str]) -> None:
    tcpext = parse_snmp(read(kernel, "netstat"))["TcpExt"]
    assert present <= tcpext.keys()
    assert not absent & tcpext.keys()


@pytest.mark.parametrize(
    ("kernel", "sections"),
    [
        ("4.4", {"TcpExt", "IpExt"}),
        ("4.19", {"TcpExt", "IpExt"}),
        ("5.10", {"TcpExt", "IpExt", "MPTcpExt"}),
        ("6.1", {"TcpExt", "IpExt", "MPTcpExt"}),
        ("live-6.18", {"TcpExt", "IpExt", "MPTcpExt"}),
    ],
)
def test_netstat_sections(kernel: str, sections: set[str]) -> None:
    assert set(parse_snmp(read(kernel, "netstat"))) == sections


def test_snmp_sections_and_versioned_fields() -> None:
    old = parse_snmp(read("4.4", "snmp"))
    new = parse_snmp(read("6.1", "snmp"))
    assert set(old) == {"Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite"}
    assert "MemErrors" not in old["Udp"] and new["Udp"]["MemErrors"] == 0
    assert "OutRateLimitGlobal" not in old["Icmp"]
    assert new["Icmp"]["OutRateLimitGlobal"] == 1203 and new["Icmp"]["OutRateLimitHost"] == 88
    assert "ReasmOverlaps" not in parse_snmp(read("4.19", "netstat"))["IpExt"]
    assert parse_snmp(read("5.10", "netstat"))["IpExt"]["ReasmOverlaps"] == 0
    assert parse_snmp(read("5.10", "netstat"))["IpExt"]["InOctets"] == 18446744073709551


def test_icmpmsg_split_over_two_line_pairs_is_merged() -> None:
    # 17 non-zero ICMP types: the kernel prints 16 on a first line pair, 1 on a second.
    icmpmsg = parse_snmp(read("6.1", "snmp"))["IcmpMsg"]
    assert len(icmpmsg) == 17
    assert icmpmsg["InType0"] == 41
    assert icmpmsg["InType8"] == 81234
    assert icmpmsg["OutType18"] == 1


def test_values_can_be_negative_and_section_can_be_empty() -> None:
    parsed = parse_snmp("Tcp: MaxConn CurrEstab\nTcp: -1 3\nIcmpMsg:\nIcmpMsg:\n")
    assert parsed == {"Tcp": {"MaxConn": -1, "CurrEstab": 3}, "IcmpMsg": {}}


def test_empty_file_is_no_sections() -> None:
    assert parse_snmp("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Tcp: A B\n", "line 1: header line without its value line"),
        ("Tcp: A B\nTcp: 1\n", "line 2: Tcp has 2 fields but 1 values"),
        ("Tcp: A B\nTcp: 1 2 3\n", "3 values"),
        ("Tcp: A B\nUdp: 1 2\n", "line 2: values are for 'Udp'"),
        ("Tcp: A B\nTcp: 1 x\n", "line 2: Tcp B is not an integer: 'x'"),
        ("Tcp: A B\nTcp: 1 0x10\n", "not an integer"),
        ("Tcp A B\nTcp 1 2\n", "line 1: expected 'Protocol:'"),
        ("Tcp: A A\nTcp: 1 2\n", "field Tcp A appears twice"),
        ("Tcp: A\nTcp: 1\nTcp: B\nTcp: 2\n", "line 3: protocol 'Tcp' appears twice"),
        ("Tcp: A-B\nTcp: 1\n", "invalid field name"),
        ("T.cp: A\nT.cp: 1\n", "expected 'Protocol:'"),
    ],
)
def test_snmp_malformed_raises_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_snmp(text)


# ------------------------------------------------------------------ /proc/net/snmp6


@pytest.mark.parametrize(
    ("kernel", "in_receives", "udp6_in", "rate_limit_host"),
    [("4.19", 81234, 1201, None), ("5.10", 1234567, 81234, None), ("6.1", 4123456, 412345, 7)],
)
def test_snmp6_fixture_values(kernel: str, in_receives: int, udp6_in: int, rate_limit_host: int | None) -> None:
    parsed = parse_snmp6(read(kernel, "snmp6"))
    assert set(parsed) == {"Ip6", "Icmp6", "Udp6", "UdpLite6"}
    assert parsed["Ip6"]["InReceives"] == in_receives
    assert parsed["Udp6"]["InDatagrams"] == udp6_in
    assert parsed["Icmp6"].get("OutRateLimitHost") == rate_limit_host
    assert "IgnoredMulti" in parsed["Udp6"] and "IgnoredMulti" not in parsed["UdpLite6"]


def test_snmp6_icmp6_types_and_protocol_split() -> None:
    parsed = parse_snmp6(read("6.1", "snmp6"))
    assert parsed["Icmp6"]["InType135"] == 20123
    assert parsed["Icmp6"]["OutType143"] == 812
    assert parsed["Ip6"]["OutForwDatagrams"] == 1012345
    live = parse_snmp6(read("live-6.18", "snmp6"))
    assert "OutTransmits" in live["Ip6"]


def test_ipv6_disabled_kernel_has_no_snmp6() -> None:
    assert not (KERNELS / "4.4" / "proc" / "net" / "snmp6").exists()


def test_snmp6_skips_names_without_six_like_node_exporter() -> None:
    # /proc/net/dev_snmp6/<iface> begins with "ifIndex N"
    assert parse_snmp6("ifIndex                         \t2\nIp6InReceives \t5\n") == {"Ip6": {"InReceives": 5}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Ip6InReceives\n", "line 1: expected 'Name value', got 1 columns"),
        ("Ip6InReceives 1 2\n", "got 3 columns"),
        ("Ip6InReceives x\n", "not an integer"),
        ("Ip6 5\n", "no field after the protocol"),
        ("Ip6InReceives 1\nIp6InReceives 2\n", "line 2: counter Ip6InReceives appears twice"),
        ("Ip6.In 1\n", "invalid counter name"),
    ],
)
def test_snmp6_malformed_raises_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_snmp6(text)


# ------------------------------------------------------------------ merge and metric names


def test_merge_follows_node_exporter_precedence() -> None:
    merged = merge_netstat({"Tcp": {"A": 1}, "TcpExt": {"B": 2}}, {"Tcp": {"C": 3}}, {"Ip6": {"D": 4}})
    assert merged == {"Tcp": {"C": 3}, "TcpExt": {"B": 2}, "Ip6": {"D": 4}}
    assert merge_netstat({"TcpExt": {"B": 2}}, {}, None) == {"TcpExt": {"B": 2}}


def test_netstat_metric_names() -> None:
    kernel = "5.10"
    merged = merge_netstat(
        parse_snmp(read(kernel, "netstat")),
        parse_snmp(read(kernel, "snmp")),
        parse_snmp6(read(kernel, "snmp6")),
    )
    metrics = {name: (labels, value) for name, labels, value in netstat_metrics(merged)}
    assert metrics["node_netstat_Tcp_RetransSegs"] == ({}, 41234012.0)
    assert metrics["node_netstat_Tcp_MaxConn"] == ({}, -1.0)
    assert metrics["node_netstat_TcpExt_ListenOverflows"] == ({}, 1234567.0)
    assert metrics["node_netstat_Ip6_InReceives"] == ({}, 1234567.0)
    assert metrics["node_netstat_Icmp6_InType135"] == ({}, 4500.0)
    assert metrics["node_netstat_MPTcpExt_MPTCPRetrans"] == ({}, 0.0)
    assert len(metrics) == sum(len(fields) for fields in merged.values())


# ------------------------------------------------------------------ fuzz

SNMP_BASES = [read(k, name) for k in KERNEL_DIRS for name in ("snmp", "netstat")]
SNMP6_BASES = [read(k, "snmp6") for k in KERNEL_DIRS if k != "4.4"]


def check_metrics(parsed: dict[str, dict[str, int]]) -> None:
    for name, labels, value in netstat_metrics(parsed):
        assert name.startswith("node_netstat_") and name.replace("_", "").isalnum() and name.isascii()
        assert labels == {}
        assert isinstance(value, float)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(SNMP_BASES, words=["Extra"]))
def test_fuzz_snmp_returns_or_raises_parse_error(text: str) -> None:
    parsed = assert_returns_or_parse_error(parse_snmp, text)
    if parsed is None:
        return
    check_metrics(parsed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(SNMP6_BASES, words=["Extra"]))
def test_fuzz_snmp6_returns_or_raises_parse_error(text: str) -> None:
    parsed = assert_returns_or_parse_error(parse_snmp6, text)
    if parsed is None:
        return
    assert all(protocol.endswith("6") for protocol in parsed)
    check_metrics(parsed)
