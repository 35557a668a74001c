"""/proc/net/softnet_stat: 10/11/13/15-column layouts, CPU mapping, 32-bit counters, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.softnet import SOFTNET_WRAP32, SoftnetRow, parse_softnet, softnet_metrics
from tests.conftest import FIXTURES
from tests.sources.parsers.fuzzing import ANY_TEXT, assert_returns_or_parse_error, mutated

KERNELS = FIXTURES / "kernels"


def read(kernel: str) -> str:
    return (KERNELS / kernel / "proc" / "net" / "softnet_stat").read_text()


def by_name(rows: list[SoftnetRow]) -> dict[tuple[str, str], float]:
    return {(name, labels["cpu"]): value for name, labels, value in softnet_metrics(rows)}


def test_4_4_eleven_columns_rows_are_row_numbers() -> None:
    rows = parse_softnet(read("4.4"))
    assert [row.cpu for row in rows] == [0, 1, 2, 3]
    assert all(not row.cpu_is_exact and row.index is None and row.backlog_len is None for row in rows)
    first = rows[0]
    assert (first.processed, first.dropped, first.time_squeeze) == (0x2B1F6E3A, 0x1C2, 0x9F)
    assert (first.cpu_collision, first.received_rps, first.flow_limit_count) == (3, 0, 0)
    assert rows[2].processed == 0xFFFFFFF0  # about to wrap
    assert rows[2].flow_limit_count == 2
    series = by_name(rows)
    assert series[("node_softnet_dropped_total", "0")] == 450.0
    assert series[("node_softnet_times_squeezed_total", "0")] == 159.0
    assert series[("node_softnet_flow_limit_count_total", "2")] == 2.0
    assert not any(name == "node_softnet_backlog_len" for name, _ in series)


def test_4_19_received_rps() -> None:
    rows = parse_softnet(read("4.19"))
    assert len(rows) == 4
    assert [row.received_rps for row in rows] == [0x1F2E, 0x2011, 0x1E01, 0x1FEE]
    assert by_name(rows)[("node_softnet_received_rps_total", "3")] == float(0x1FEE)


def test_5_10_index_and_backlog() -> None:
    rows = parse_softnet(read("5.10"))
    assert [row.index for row in rows] == [0, 1, 2, 3]
    assert all(row.cpu_is_exact for row in rows)
    assert rows[2].backlog_len == 2
    assert rows[0].input_qlen is None
    assert by_name(rows)[("node_softnet_backlog_len", "2")] == 2.0


def test_6_1_offline_cpu_uses_index_column() -> None:
    # CPU 2 is offline: three rows, and the third row is CPU 3, not CPU 2.
    rows = parse_softnet(read("6.1"))
    assert [row.cpu for row in rows] == [0, 1, 3]
    series = by_name(rows)
    assert series[("node_softnet_processed_total", "3")] == float(0x10A2B3C4)
    assert ("node_softnet_processed_total", "2") not in series
    assert series[("node_softnet_dropped_total", "0")] == float(0x2F1)
    assert series[("node_softnet_flow_limit_count_total", "0")] == 17.0


def test_live_fifteen_columns() -> None:
    rows = parse_softnet(read("live-6.18"))
    assert [row.cpu for row in rows] == [0, 1]
    assert rows[0].processed == 0x000E3CCC
    assert rows[0].dropped == 0x731
    assert (rows[1].input_qlen, rows[1].process_qlen) == (0, 0)


def test_online_cpus_map_rows_without_index() -> None:
    text = "00000005 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n" * 2
    rows = parse_softnet(text, online_cpus=[0, 5])
    assert [(row.cpu, row.cpu_is_exact) for row in rows] == [(0, True), (5, True)]
    assert rows[0].flow_limit_count is None  # 10 columns: before 3.13
    # A CPU list that does not match the rows (hotplug between reads) is not trusted.
    assert [row.cpu_is_exact for row in parse_softnet(text, online_cpus=[0, 1, 2])] == [False, False]


def test_future_columns_are_ignored() -> None:
    row = "00000010 00000002 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 "
    rows = parse_softnet(row + "00000000 00000001 00000004 00000000 00000000 0000abcd\n")
    assert (rows[0].cpu, rows[0].processed, rows[0].backlog_len, rows[0].process_qlen) == (4, 16, 1, 0)


def test_all_counters_are_wrap32_and_gauge_is_not() -> None:
    names = {name for name, _, _ in softnet_metrics(parse_softnet(read("6.1")))}
    assert names - SOFTNET_WRAP32 == {"node_softnet_backlog_len"}
    assert SOFTNET_WRAP32 <= names


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("0000 0001 0002\n", "3 columns"),
        ("00000001 " * 10 + "\n" + "00000001 " * 11 + "\n", "line 1 has 10"),
        ("0000000g " + "00000000 " * 9 + "\n", "'0000000g'"),
        ("100000000 " + "00000000 " * 9 + "\n", "32-bit"),
        (("00000000 " * 12 + "00000001\n") * 2, "same CPU"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_softnet(text)


@settings(max_examples=300, deadline=None)
@given(mutated([read("6.1")], alphabet="0123456789abcdefx -"), st.none() | st.lists(st.integers(0, 64), max_size=5))
def test_fuzz_returns_or_raises_parse_error(text: str, online: list[int] | None) -> None:
    rows = assert_returns_or_parse_error(lambda t: parse_softnet(t, online_cpus=online), text)
    if rows is None:
        return
    assert rows
    softnet_metrics(rows)


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT)
def test_fuzz_any_text(text: str) -> None:
    assert_returns_or_parse_error(lambda t: softnet_metrics(parse_softnet(t)), text)
