"""ethtool -l / -g output parsing (the live source's channels and rings)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netdoctor.errors import ParseError
from netdoctor.sources.parsers.ethtool import parse_channels, parse_rings
from tests.sources.parsers.fuzzing import assert_returns_or_parse_error, mutated

VETH_CHANNELS = """Channel parameters for vtest0:
Pre-set maximums:
RX:\t\t2
TX:\t\t2
Other:\t\tn/a
Combined:\tn/a
Current hardware settings:
RX:\t\t1
TX:\t\t1
Other:\t\tn/a
Combined:\tn/a
"""

RINGS = """Ring parameters for eth0:
Pre-set maximums:
RX:\t\t4096
RX Mini:\tn/a
RX Jumbo:\tn/a
TX:\t\t4096
Current hardware settings:
RX:\t\t256
RX Mini:\tn/a
RX Jumbo:\tn/a
TX:\t\t512
RX Buf Len:\t\tn/a
TCP data split:\tn/a
"""


def test_channels_of_a_veth() -> None:
    assert parse_channels(VETH_CHANNELS) == {"max_rx": 2, "max_tx": 2, "rx": 1, "tx": 1}


def test_rings() -> None:
    assert parse_rings(RINGS) == {"rx_max": 4096, "tx_max": 4096, "rx": 256, "tx": 512}


def test_garbage_numbers_and_missing_blocks_are_parse_errors() -> None:
    with pytest.raises(ParseError, match="not a number"):
        parse_channels(VETH_CHANNELS.replace("RX:\t\t2", "RX:\t\tlots"))
    with pytest.raises(ParseError, match="Pre-set maximums"):
        parse_rings("netlink error: Operation not supported\n")


@given(st.text(max_size=400) | mutated([VETH_CHANNELS, RINGS], words=["n/a"]))
def test_fuzz_returns_or_raises_parse_error(text: str) -> None:
    for parse in (parse_channels, parse_rings):
        result = assert_returns_or_parse_error(parse, text)
        if result is not None:
            assert all(isinstance(v, int) for v in result.values())


@given(st.integers(0, 2**20), st.integers(0, 2**20))
def test_round_trip_of_any_counts(maximum: int, current: int) -> None:
    # Split on the block headers so each RX line is replaced in its own block (a plain replace of "RX:\t\t256"
    # would also hit a maximum of 256000).
    head, _, rest = RINGS.partition("Current hardware settings:")
    text = (
        head.replace("RX:\t\t4096", f"RX:\t\t{maximum}")
        + "Current hardware settings:"
        + rest.replace("RX:\t\t256", f"RX:\t\t{current}", 1)
    )
    parsed = parse_rings(text)
    assert parsed["rx_max"] == maximum and parsed["rx"] == current
