"""/proc/net/stat/nf_conntrack: renamed columns across kernels, entries never summed, per-CPU series, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.conntrack import (
    conntrack_metrics,
    conntrack_stat_metrics,
    parse_conntrack_stat,
)
from tests.conftest import FIXTURES
from tests.sources.parsers.fuzzing import ANY_TEXT, assert_returns_or_parse_error, mutated

KERNELS = FIXTURES / "kernels"


def read(kernel: str) -> str:
    return (KERNELS / kernel / "proc" / "net" / "stat" / "nf_conntrack").read_text()


def summed(kernel: str) -> dict[str, float]:
    metrics = conntrack_stat_metrics(parse_conntrack_stat(read(kernel)))
    return {name: value for name, labels, value in metrics if not labels}


def per_cpu(kernel: str) -> dict[tuple[str, str], float]:
    metrics = conntrack_stat_metrics(parse_conntrack_stat(read(kernel)))
    return {(name, labels["cpu"]): value for name, labels, value in metrics if labels}


@pytest.mark.parametrize(
    ("kernel", "renamed"),
    [
        ("4.4", "searched"),
        ("4.19", "searched"),
        ("5.10", "clashres"),
        ("6.1", "clashres"),
        ("live-6.18", "clashres"),
    ],
)
def test_every_kernel_has_17_named_columns(kernel: str, renamed: str) -> None:
    rows = parse_conntrack_stat(read(kernel))
    assert all(len(row) == 17 for row in rows)
    assert list(rows[0])[:2] == ["entries", renamed]
    assert "search_restart" in rows[0]


def test_4_4_values_and_entries_not_summed() -> None:
    rows = parse_conntrack_stat(read("4.4"))
    assert len(rows) == 4
    assert rows[0]["searched"] == 0x1A2B3C
    assert rows[0]["delete_list"] == 0x9900
    assert {row["entries"] for row in rows} == {0x3F12}
    totals = summed("4.4")
    assert totals["node_nf_conntrack_stat_found"] == float(0x4C2D + 0x4B01 + 0x2010 + 0x1001)
    assert totals["node_nf_conntrack_stat_insert_failed"] == 4.0
    assert totals["node_nf_conntrack_stat_drop"] == 4.0
    assert totals["node_nf_conntrack_stat_search_restart"] == float(0x11 + 0x0F + 0x02)
    assert "node_nf_conntrack_stat_entries" not in totals
    assert not any(name.endswith("_entries") for name, _ in per_cpu("4.4"))


def test_5_10_insert_failed_on_every_cpu() -> None:
    totals = summed("5.10")
    assert totals["node_nf_conntrack_stat_insert_failed"] == float(0x4E + 0x51 + 0x49 + 0x4D)
    assert totals["node_nf_conntrack_stat_early_drop"] == float(0x1F + 0x22 + 0x19 + 0x20)
    cpus = per_cpu("5.10")
    assert cpus[("netdoctor_nf_conntrack_stat_insert_failed", "1")] == float(0x51)
    assert cpus[("netdoctor_nf_conntrack_stat_clashres", "0")] == float(0x12)


def test_6_1_chainlength_and_offline_cpu_row() -> None:
    rows = parse_conntrack_stat(read("6.1"))
    assert len(rows) == 4  # possible CPUs, including the offline CPU 2 (all zero)
    assert rows[0]["chainlength"] == 2
    assert all(value == 0 for name, value in rows[2].items() if name != "entries")
    cpus = per_cpu("6.1")
    assert cpus[("netdoctor_nf_conntrack_stat_chainlength", "0")] == 2.0
    assert cpus[("netdoctor_nf_conntrack_stat_invalid", "3")] == float(0x177)
    assert summed("6.1")["node_nf_conntrack_stat_invalid"] == float(0x1A0 + 0x181 + 0x177)


def test_live_host_all_zero() -> None:
    assert set(summed("live-6.18").values()) == {0.0}
    assert len(summed("live-6.18")) == 8


def test_entries_and_limit() -> None:
    count = int((KERNELS / "5.10/proc/sys/net/netfilter/nf_conntrack_count").read_text())
    limit = int((KERNELS / "5.10/proc/sys/net/netfilter/nf_conntrack_max").read_text())
    assert conntrack_metrics(count, limit) == [
        ("node_nf_conntrack_entries", {}, 32765.0),
        ("node_nf_conntrack_entries_limit", {}, 32768.0),
    ]


def test_missing_field_is_not_reported_as_zero() -> None:
    rows = parse_conntrack_stat("entries found drop\n00000001 00000002 00000003\n")
    names = {name for name, labels, _ in conntrack_stat_metrics(rows) if not labels}
    assert names == {"node_nf_conntrack_stat_found", "node_nf_conntrack_stat_drop"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("00000001 00000002\n", "header"),
        ("entries found\n", "no CPU rows"),
        ("entries found\n00000001\n", "1 fields, header has 2"),
        ("entries found\n00000001 zz\n", "'zz'"),
        ("entries found found\n1 2 3\n", "repeats"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_conntrack_stat(text)


@settings(max_examples=300, deadline=None)
@given(mutated([read("6.1")], alphabet="0123456789abcdef_x -"))
def test_fuzz_returns_or_raises_parse_error(text: str) -> None:
    rows = assert_returns_or_parse_error(parse_conntrack_stat, text)
    if rows is None:
        return
    assert rows
    conntrack_stat_metrics(rows)


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT)
def test_fuzz_any_text(text: str) -> None:
    assert_returns_or_parse_error(lambda t: conntrack_stat_metrics(parse_conntrack_stat(t)), text)
