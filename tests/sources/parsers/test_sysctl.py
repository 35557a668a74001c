"""Single-value kernel files: integers, port ranges and lists, CPU lists and hex CPU masks, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.sysctl import (
    parse_cpu_list,
    parse_cpu_mask,
    parse_int,
    parse_port_list,
    parse_port_range,
)
from tests.conftest import FIXTURES
from tests.sources.parsers.fuzzing import assert_returns_or_parse_error

KERNELS = FIXTURES / "kernels"


def test_parse_int_on_fixtures() -> None:
    assert parse_int((KERNELS / "4.19/proc/sys/net/netfilter/nf_conntrack_count").read_text()) == 123553
    assert parse_int((KERNELS / "live-6.18/proc/sys/net/netfilter/nf_conntrack_max").read_text()) == 262144
    assert parse_int((KERNELS / "live-6.18/sys/class/net/eth0/speed").read_text()) == -1
    assert parse_int(" 7 \n") == 7


@pytest.mark.parametrize("text", ["", "\n", "abc", "1 2", "0x10", "1.5", "1\n2\n", "²"])
def test_parse_int_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_int(text)


def test_port_range() -> None:
    assert parse_port_range("32768\t60999\n") == (32768, 60999)
    assert parse_port_range("1024 1024") == (1024, 1024)
    for bad in ("60999\t32768", "1 2 3", "1", "", "-1 5", "1 70000", "a b"):
        with pytest.raises(ParseError):
            parse_port_range(bad)


def test_port_list() -> None:
    assert parse_port_list("") == []
    assert parse_port_list("\n") == []
    assert parse_port_list("8080,9000-9003\n") == [8080, 9000, 9001, 9002, 9003]
    assert parse_port_list("9000-9001,8080,9000") == [8080, 9000, 9001]
    assert len(parse_port_list("1-65535")) == 65535
    for bad in ("9010-9000", "80,", "a", "1-2-3", "70000", "-5"):
        with pytest.raises(ParseError):
            parse_port_list(bad)


def test_cpu_list_on_fixtures() -> None:
    def affinity(kernel: str, irq: int) -> tuple[int, ...]:
        return parse_cpu_list((KERNELS / kernel / f"proc/irq/{irq}/smp_affinity_list").read_text())

    assert affinity("4.4", 25) == (0,)
    assert affinity("4.19", 39) == (3,)
    assert affinity("6.1", 98) == (0, 1, 2, 3)
    assert affinity("live-6.18", 38) == (0, 1)
    assert parse_cpu_list("0-3,8,10-11") == (0, 1, 2, 3, 8, 10, 11)
    assert parse_cpu_list("") == ()
    for bad in ("3-1", "0-", "a", "0,,1", "1-99999999", "0-15:2"):
        with pytest.raises(ParseError):
            parse_cpu_list(bad)


def test_cpu_mask() -> None:
    assert parse_cpu_mask("00000000,0000000f\n") == (0, 1, 2, 3)
    assert parse_cpu_mask("00000001,00000000") == (32,)
    assert parse_cpu_mask("80000000,00000001") == (0, 63)
    assert parse_cpu_mask("0") == ()
    assert parse_cpu_mask("3") == (0, 1)
    assert parse_cpu_mask("ff") == tuple(range(8))
    irq38 = KERNELS / "4.19/proc/irq/38"
    assert parse_cpu_mask((irq38 / "smp_affinity").read_text()) == (2,)
    assert parse_cpu_list((irq38 / "smp_affinity_list").read_text()) == (2,)
    live = KERNELS / "live-6.18/proc/irq/38"
    assert parse_cpu_mask((live / "smp_affinity").read_text()) == parse_cpu_list(
        (live / "smp_affinity_list").read_text()
    )
    for bad in ("", "g", "1,,2", "123456789", "0x3", ",1"):
        with pytest.raises(ParseError):
            parse_cpu_mask(bad)


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(0, 255), max_size=20))
def test_mask_and_list_agree(cpus: set[int]) -> None:
    """Round trip: format a set as the kernel would (mask and list) and parse both back."""
    bits = sum(1 << cpu for cpu in cpus)
    groups = [f"{(bits >> shift) & 0xFFFFFFFF:08x}" for shift in range(224, -1, -32)]
    listed = ",".join(str(cpu) for cpu in sorted(cpus))
    assert parse_cpu_mask(",".join(groups)) == tuple(sorted(cpus)) == parse_cpu_list(listed)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdefx,-: \t\n", max_size=40) | st.text(max_size=40))
def test_fuzz_every_parser(text: str) -> None:
    for parser in (parse_int, parse_port_range, parse_port_list, parse_cpu_list, parse_cpu_mask):
        result = assert_returns_or_parse_error(parser, text)
        if result is not None and parser is parse_port_range:
            assert result[0] <= result[1]
