"""Parse `ethtool -l` (channels) and `ethtool -g` (rings) output.

The binary speaks ethtool netlink or the ioctl, whichever the kernel has, so its
text is the most portable answer; these parsers keep only the numbers.
"""

from __future__ import annotations

from netdoctor.errors import ParseError

_CHANNEL_KEYS = {"RX": "rx", "TX": "tx", "Other": "other", "Combined": "combined"}
_RING_KEYS = {"RX": "rx", "RX Mini": "rx_mini", "RX Jumbo": "rx_jumbo", "TX": "tx"}


def _parse_two_blocks(text: str, keys: dict[str, str], what: str) -> dict[str, int]:
    """`Pre-set maximums:` then `Current hardware settings:` blocks of `Key: value` lines."""
    result: dict[str, int] = {}
    block: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("Pre-set maximums"):
            block = "max"
            continue
        if stripped.startswith("Current hardware settings"):
            block = "current"
            continue
        if block is None or ":" not in stripped:
            continue
        key, _, value = stripped.partition(":")
        name = keys.get(key.strip())
        value = value.strip()
        if name is None or value in ("n/a", ""):
            continue
        try:
            number_value = int(value)
        except ValueError as exc:
            raise ParseError(f"line {number}: {key.strip()} is {value!r}, not a number") from exc
        result[f"max_{name}" if block == "max" else name] = number_value
    if block is None:
        raise ParseError(f"no 'Pre-set maximums' block in ethtool {what} output")
    return result


def parse_channels(text: str) -> dict[str, int]:
    """ethtool -l: {"max_rx": 2, "rx": 1, "max_combined": 8, "combined": 4, ...}; n/a fields omitted."""
    return _parse_two_blocks(text, _CHANNEL_KEYS, "-l")


def parse_rings(text: str) -> dict[str, int]:
    """ethtool -g: {"rx_max": 4096, "rx": 256, "tx_max": 4096, "tx": 256}."""
    raw = _parse_two_blocks(text, _RING_KEYS, "-g")
    return {(key[4:] + "_max" if key.startswith("max_") else key): value for key, value in raw.items()}
