"""/proc/meminfo parser: four kernels and this host, node_exporter names, malformed input, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.meminfo import Meminfo, meminfo_metrics, parse_meminfo
from tests.conftest import FIXTURES
from tests.sources.parsers.fuzzing import assert_returns_or_parse_error, mutated

KERNELS = FIXTURES / "kernels"
KERNEL_DIRS = ["4.4", "4.19", "5.10", "6.1", "live-6.18"]


def read(kernel: str) -> str:
    return (KERNELS / kernel / "proc" / "meminfo").read_text()


@pytest.mark.parametrize(
    ("kernel", "mem_total_kb", "mem_available_kb", "active_anon_kb", "hugepages_total", "present", "absent"),
    [
        (
            "4.4",
            16330756,
            9123456,
            4012344,
            0,
            {"CmaTotal", "DirectMap1G"},
            {"KReclaimable", "Percpu", "Hugetlb"},
        ),
        ("4.19", 8041248, 4123400, 2612340, 0, {"Percpu", "Hugetlb", "ShmemHugePages"}, {"KReclaimable"}),
        ("5.10", 131898388, 61234567, 40123456, 1024, {"KReclaimable", "FileHugePages"}, {"Zswap"}),
        ("6.1", 32768000, 24123456, 6123456, 0, {"Zswap", "SecPageTables"}, {"CmaTotal"}),
    ],
)
def test_fixture_values(
    kernel: str,
    mem_total_kb: int,
    mem_available_kb: int,
    active_anon_kb: int,
    hugepages_total: int,
    present: set[str],
    absent: set[str],
) -> None:
    parsed = parse_meminfo(read(kernel))
    assert parsed["MemTotal"] == mem_total_kb * 1024
    assert parsed["MemAvailable"] == mem_available_kb * 1024
    assert parsed["Active(anon)"] == active_anon_kb * 1024
    assert parsed["HugePages_Total"] == hugepages_total
    assert parsed["Hugepagesize"] == 2048 * 1024
    assert present <= parsed.keys()
    assert not absent & parsed.keys()
    assert parsed.unitless == {"HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp"}


def test_metric_names() -> None:
    metrics = {name: value for name, labels, value in meminfo_metrics(parse_meminfo(read("5.10")))}
    assert metrics["node_memory_MemTotal_bytes"] == 131898388 * 1024
    assert metrics["node_memory_Active_anon_bytes"] == 40123456 * 1024
    assert metrics["node_memory_Inactive_file_bytes"] == 48888889 * 1024
    assert metrics["node_memory_HugePages_Total"] == 1024
    assert metrics["node_memory_HugePages_Rsvd"] == 12
    assert metrics["node_memory_Hugepagesize_bytes"] == 2048 * 1024
    assert metrics["node_memory_VmallocTotal_bytes"] == 34359738367 * 1024
    assert "node_memory_HugePages_Total_bytes" not in metrics


def test_metrics_of_plain_dict_use_the_kernel_unitless_keys() -> None:
    names = [name for name, _, _ in meminfo_metrics({"MemFree": 1024, "HugePages_Free": 3, "Active(file)": 0})]
    assert names == [
        "node_memory_MemFree_bytes",
        "node_memory_HugePages_Free",
        "node_memory_Active_file_bytes",
    ]


def test_is_a_dict() -> None:
    parsed = parse_meminfo("MemTotal:  10 kB\n\nHugePages_Surp:  2\n")
    assert isinstance(parsed, dict) and isinstance(parsed, Meminfo)
    assert parsed == {"MemTotal": 10240, "HugePages_Surp": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("MemTotal 10 kB\n", "line 1: expected 'Key:'"),
        ("MemTotal:\n", "got 1 columns"),
        ("MemTotal: 10 kB extra\n", "got 4 columns"),
        ("MemTotal: 10 MB\n", "unit 'MB', expected 'kB'"),
        ("MemTotal: ten kB\n", "MemTotal is not an integer"),
        ("MemTotal: 1 kB\nMemTotal: 2 kB\n", "line 2: key 'MemTotal' appears twice"),
        ("Mem-Total: 1 kB\n", "expected 'Key:'"),
        ("Active(anon: 1 kB\n", "expected 'Key:'"),
    ],
)
def test_malformed_raises_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_meminfo(text)


# ------------------------------------------------------------------ fuzz

BASES = [read(k) for k in KERNEL_DIRS]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(BASES, words=["kB"]))
def test_fuzz_returns_or_raises_parse_error(text: str) -> None:
    parsed = assert_returns_or_parse_error(parse_meminfo, text)
    if parsed is None:
        return
    for name, labels, value in meminfo_metrics(parsed):
        assert name.startswith("node_memory_") and name.isascii() and "(" not in name
        assert labels == {} and isinstance(value, float)
