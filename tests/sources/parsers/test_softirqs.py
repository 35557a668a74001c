"""/proc/softirqs: header-mapped CPUs (possible CPUs, offline included), vector rows, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.softirqs import parse_softirqs, softirqs_metrics
from tests.conftest import FIXTURES
from tests.sources.parsers.fuzzing import ANY_TEXT, assert_returns_or_parse_error, mutated

KERNELS = FIXTURES / "kernels"


def read(kernel: str) -> str:
    return (KERNELS / kernel / "proc" / "softirqs").read_text()


@pytest.mark.parametrize(
    ("kernel", "cpu", "net_rx", "poll_vector"),
    [
        ("4.4", 0, 399120003, "BLOCK_IOPOLL"),
        ("4.19", 3, 3799679755, "IRQ_POLL"),
        ("5.10", 2, 182504000, "IRQ_POLL"),
        ("6.1", 2, 0, "IRQ_POLL"),
        ("live-6.18", 1, 816090, "IRQ_POLL"),
    ],
)
def test_fixtures(kernel: str, cpu: int, net_rx: int, poll_vector: str) -> None:
    parsed = parse_softirqs(read(kernel))
    assert len(parsed) == 10
    assert parsed["NET_RX"][cpu] == net_rx
    assert poll_vector in parsed


def test_6_1_offline_cpu_column_is_kept() -> None:
    parsed = parse_softirqs(read("6.1"))
    assert sorted(parsed["NET_RX"]) == [0, 1, 2, 3]
    assert parsed["NET_RX"][0] == 500012001


def test_metrics_names_and_labels() -> None:
    metrics = softirqs_metrics(parse_softirqs(read("4.4")))
    assert ("node_softirqs_functions_total", {"cpu": "0", "type": "NET_RX"}, 399120003.0) in metrics
    assert ("node_softirqs_functions_total", {"cpu": "3", "type": "NET_TX"}, 7088.0) in metrics
    assert len(metrics) == 40


def test_sparse_header() -> None:
    parsed = parse_softirqs("    CPU0 CPU4\nNET_RX: 1 2\n")
    assert parsed == {"NET_RX": {0: 1, 4: 2}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("NET_RX: 1 2\n", "not CPUn"),
        ("CPU0 CPU1\nNET_RX: 1\n", "1 counts for 2 CPUs"),
        ("CPU0\nNET_RX 1\n", "expected"),
        ("CPU0\nNET_RX: -1\n", "'-1'"),
        ("CPU0\nNET_RX: 1\nNET_RX: 2\n", "twice"),
        ("CPU0 CPU0\nNET_RX: 1 2\n", "repeats"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_softirqs(text)


@settings(max_examples=300, deadline=None)
@given(mutated([read("6.1")], alphabet="0123456789 CPU:-"))
def test_fuzz_returns_or_raises_parse_error(text: str) -> None:
    assert_returns_or_parse_error(lambda t: softirqs_metrics(parse_softirqs(t)), text)


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT)
def test_fuzz_any_text(text: str) -> None:
    assert_returns_or_parse_error(lambda t: softirqs_metrics(parse_softirqs(t)), text)
