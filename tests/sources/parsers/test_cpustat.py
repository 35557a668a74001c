"""/proc/stat: CPU ticks -> seconds, online CPUs, scalar counters, short cpu lines, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.cpustat import online_cpus, parse_stat, stat_metrics
from tests.conftest import FIXTURES
from tests.sources.parsers.fuzzing import ANY_TEXT, assert_returns_or_parse_error, mutated

KERNELS = FIXTURES / "kernels"


def read(kernel: str) -> str:
    return (KERNELS / kernel / "proc" / "stat").read_text()


def series(kernel: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (name, tuple(sorted(labels.items()))): value for name, labels, value in stat_metrics(parse_stat(read(kernel)))
    }


def cpu(mode: str, number: int) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("node_cpu_seconds_total", (("cpu", str(number)), ("mode", mode)))


@pytest.mark.parametrize(
    ("kernel", "cpus"),
    [
        ("4.4", [0, 1, 2, 3]),
        ("4.19", [0, 1, 2, 3]),
        ("5.10", [0, 1, 2, 3]),
        ("6.1", [0, 1, 3]),
        ("live-6.18", [0, 1]),
    ],
)
def test_online_cpus(kernel: str, cpus: list[int]) -> None:
    assert online_cpus(parse_stat(read(kernel))) == cpus


def test_4_4_seconds_are_ticks_over_user_hz() -> None:
    values = series("4.4")
    assert values[cpu("user", 0)] == 4660.42
    assert values[cpu("softirq", 0)] == 971.12
    assert values[cpu("idle", 3)] == 229931.24
    assert values[cpu("steal", 1)] == 0.0
    assert ("node_cpu_guest_seconds_total", (("cpu", "2"), ("mode", "nice"))) in values
    assert values[("node_intr_total", ())] == 1395063722.0
    assert values[("node_context_switches_total", ())] == 2730216617.0
    assert values[("node_forks_total", ())] == 8812301.0
    assert values[("node_boot_time_seconds", ())] == 1510001234.0
    assert values[("node_procs_running", ())] == 3.0
    assert values[("node_procs_blocked", ())] == 1.0
    assert values[("node_softirqs_total", (("vector", "net_rx"),))] == 412229187.0


def test_5_10_steal() -> None:
    assert series("5.10")[cpu("steal", 0)] == 113.01


def test_6_1_offline_cpu_has_no_series() -> None:
    values = series("6.1")
    assert values[cpu("softirq", 0)] == 28010.01
    assert not any(dict(labels).get("cpu") == "2" for _, labels in values)


def test_live_host() -> None:
    info = parse_stat(read("live-6.18"))
    assert info.cpus[1].user == 7597
    assert info.context_switches == 996042
    assert info.boot_time == 1795595120
    assert info.softirqs["net_rx"] == 1422908  # 5th number after the total: hi timer net_tx net_rx
    assert info.softirqs_total == 1742502


def test_short_cpu_lines_of_old_kernels() -> None:
    # 2.6.18-style: 8 columns (no guest, no guest_nice): those series are absent, not zero.
    info = parse_stat("cpu  1 2 3 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\nintr 9\nctxt 10\n")
    assert info.cpus[0].steal == 8
    assert info.cpus[0].guest is None
    names = {(name, labels.get("mode")) for name, labels, _ in stat_metrics(info)}
    assert ("node_cpu_seconds_total", "steal") in names
    assert not any(name == "node_cpu_guest_seconds_total" for name, _ in names)
    assert info.forks is None  # no processes line: no node_forks_total
    assert "node_forks_total" not in {name for name, _, _ in stat_metrics(info)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no cpuN"),
        ("cpu  1 2 3 4\n", "no cpuN"),
        ("cpu0 1 2 3\n", "3 columns"),
        ("cpu0 1 2 3 4 5 6 7 8 9 10 11\n", "11 columns"),
        ("cpu0 1 2 x 4\n", "'x'"),
        ("cpu0 1 2 3 4\ncpu0 1 2 3 4\n", "twice"),
        ("cpu0 1 2 3 4\nctxt\n", "one value"),
        ("cpu0 1 2 3 4\nintr\n", "no total"),
        ("cpu0 1 2 3 4\nbtime -5\n", "'-5'"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_stat(text)


@settings(max_examples=300, deadline=None)
@given(mutated([read("6.1")]))
def test_fuzz_returns_or_raises_parse_error(text: str) -> None:
    info = assert_returns_or_parse_error(parse_stat, text)
    if info is None:
        return
    assert online_cpus(info)
    stat_metrics(info)


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT)
def test_fuzz_any_text(text: str) -> None:
    assert_returns_or_parse_error(lambda t: stat_metrics(parse_stat(t)), text)
