"""/proc/net/sockstat and sockstat6 parser: kernel fixtures, node_exporter names, malformed input, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.sockstat import parse_sockstat, sockstat_metrics
from tests.conftest import FIXTURES
from tests.sources.parsers.fuzzing import assert_returns_or_parse_error, mutated

KERNELS = FIXTURES / "kernels"
KERNEL_DIRS = ["4.4", "4.19", "5.10", "6.1", "live-6.18"]


def read(kernel: str, name: str) -> str:
    return (KERNELS / kernel / "proc" / "net" / name).read_text()


@pytest.mark.parametrize(
    ("kernel", "used", "tcp", "udp_mem", "frag"),
    [
        (
            "4.4",
            1243,
            {"inuse": 331, "orphan": 2, "tw": 8123, "alloc": 402, "mem": 1841},
            9,
            {"inuse": 0, "memory": 0},
        ),
        (
            "4.19",
            2451,
            {"inuse": 1890, "orphan": 14, "tw": 20312, "alloc": 2010, "mem": 40123},
            31,
            {"inuse": 0, "memory": 0},
        ),
        (
            "5.10",
            48123,
            {"inuse": 24012, "orphan": 3312, "tw": 180234, "alloc": 24500, "mem": 412345},
            18234,
            {"inuse": 2, "memory": 8192},
        ),
        (
            "6.1",
            412,
            {"inuse": 21, "orphan": 0, "tw": 9, "alloc": 34, "mem": 5},
            12,
            {"inuse": 1, "memory": 4096},
        ),
    ],
)
def test_fixture_values(kernel: str, used: int, tcp: dict[str, int], udp_mem: int, frag: dict[str, int]) -> None:
    parsed = parse_sockstat(read(kernel, "sockstat"))
    assert list(parsed) == ["sockets", "TCP", "UDP", "UDPLITE", "RAW", "FRAG"]
    assert parsed["sockets"] == {"used": used}
    assert parsed["TCP"] == tcp
    assert parsed["UDP"]["mem"] == udp_mem
    assert parsed["FRAG"] == frag
    assert parsed["UDPLITE"] == {"inuse": 0}


@pytest.mark.parametrize(("kernel", "tcp6", "raw6"), [("4.19", 41, 1), ("5.10", 812, 2), ("6.1", 7, 2)])
def test_sockstat6_fixture(kernel: str, tcp6: int, raw6: int) -> None:
    parsed = parse_sockstat(read(kernel, "sockstat6"))
    assert list(parsed) == ["TCP6", "UDP6", "UDPLITE6", "RAW6", "FRAG6"]
    assert parsed["TCP6"] == {"inuse": tcp6}
    assert parsed["RAW6"] == {"inuse": raw6}
    assert parsed["FRAG6"] == {"inuse": 0, "memory": 0}


def test_ipv6_disabled_kernel_has_no_sockstat6() -> None:
    assert not (KERNELS / "4.4" / "proc" / "net" / "sockstat6").exists()


def test_metrics_ipv4_names_and_mem_bytes() -> None:
    metrics = {
        name: value for name, labels, value in sockstat_metrics(parse_sockstat(read("5.10", "sockstat")), ipv6=False)
    }
    assert metrics == {
        "node_sockstat_sockets_used": 48123.0,
        "node_sockstat_TCP_inuse": 24012.0,
        "node_sockstat_TCP_orphan": 3312.0,
        "node_sockstat_TCP_tw": 180234.0,
        "node_sockstat_TCP_alloc": 24500.0,
        "node_sockstat_TCP_mem": 412345.0,
        "node_sockstat_TCP_mem_bytes": 412345.0 * 4096,
        "node_sockstat_UDP_inuse": 512.0,
        "node_sockstat_UDP_mem": 18234.0,
        "node_sockstat_UDP_mem_bytes": 18234.0 * 4096,
        "node_sockstat_UDPLITE_inuse": 0.0,
        "node_sockstat_RAW_inuse": 4.0,
        "node_sockstat_FRAG_inuse": 2.0,
        "node_sockstat_FRAG_memory": 8192.0,
    }


def test_metrics_page_size_and_ipv6() -> None:
    v4 = dict(
        (n, v) for n, _, v in sockstat_metrics(parse_sockstat(read("6.1", "sockstat")), ipv6=False, page_size=65536)
    )
    assert v4["node_sockstat_TCP_mem_bytes"] == 5 * 65536
    v6 = dict((n, v) for n, _, v in sockstat_metrics(parse_sockstat(read("6.1", "sockstat6")), ipv6=True))
    assert v6 == {
        "node_sockstat_TCP6_inuse": 7.0,
        "node_sockstat_UDP6_inuse": 9.0,
        "node_sockstat_UDPLITE6_inuse": 0.0,
        "node_sockstat_RAW6_inuse": 2.0,
        "node_sockstat_FRAG6_inuse": 0.0,
        "node_sockstat_FRAG6_memory": 0.0,
    }


def test_sockets_used_only_for_ipv4() -> None:
    parsed = parse_sockstat("sockets: used 3\nTCP6: inuse 1\n")
    assert [n for n, _, _ in sockstat_metrics(parsed, ipv6=True)] == ["node_sockstat_TCP6_inuse"]


def test_unknown_keys_are_parsed_but_not_named() -> None:
    parsed = parse_sockstat("TCP: inuse 1 future 9\n")
    assert parsed == {"TCP": {"inuse": 1, "future": 9}}
    assert [n for n, _, _ in sockstat_metrics(parsed, ipv6=False)] == ["node_sockstat_TCP_inuse"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("TCP:\n", "line 1: TCP has no key/value pairs"),
        ("TCP: inuse\n", "odd number of tokens"),
        ("TCP: inuse 1 tw\n", "odd number"),
        ("TCP inuse 1\n", "expected 'PROTOCOL:'"),
        ("TCP: inuse x\n", "TCP inuse is not an integer: 'x'"),
        ("TCP: inuse 1\nTCP: inuse 2\n", "line 2: protocol 'TCP' appears twice"),
        ("TCP: inuse 1 inuse 2\n", "key 'inuse' appears twice"),
        ("TCP: in-use 1\n", "invalid key"),
    ],
)
def test_malformed_raises_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_sockstat(text)


# ------------------------------------------------------------------ fuzz

BASES = [read(k, "sockstat") for k in KERNEL_DIRS] + [read(k, "sockstat6") for k in KERNEL_DIRS if k != "4.4"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(BASES, words=["mem"]), st.booleans())
def test_fuzz_returns_or_raises_parse_error(text: str, ipv6: bool) -> None:
    parsed = assert_returns_or_parse_error(parse_sockstat, text)
    if parsed is None:
        return
    for name, labels, value in sockstat_metrics(parsed, ipv6=ipv6):
        assert name.startswith("node_sockstat_") and name.isascii()
        assert labels == {} and isinstance(value, float)
