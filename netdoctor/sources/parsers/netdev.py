"""Parser for /proc/net/dev: per-interface packet, byte, error and drop counters.

/proc/net/dev is the cheapest per-interface source there is (one read for every
interface, see ARCHITECTURE.md "What is slow"), so per-interface work starts here.

Shape (kernel `dev_seq_printf_stats`, format "%6s:%8llu %7llu ..."): two header
lines, then one line per interface: the name right-aligned to 6 characters, a colon,
and 16 unsigned counters (8 receive, 8 transmit). A name longer than 6 characters or
a receive-bytes value of 9 or more digits joins the colon with no space between
("enp0s31f6:123456789 ..."), so the line is split at its first colon, never on
whitespace. Interface names may contain '.', '-' and '_' (VLANs "bond0.100", bridges
"br-3f2a..."); the kernel forbids ':' and whitespace in them.

The kernel already folds some driver counters into these columns: "drop" is
rx_dropped + rx_missed_errors, "frame" is length + over + crc + frame errors.
"""

from __future__ import annotations

import re

from netdoctor.errors import ParseError
from netdoctor.sources.parsers import Metric

NETDEV_FIELDS: tuple[str, ...] = (
    "receive_bytes",
    "receive_packets",
    "receive_errs",
    "receive_drop",
    "receive_fifo",
    "receive_frame",
    "receive_compressed",
    "receive_multicast",
    "transmit_bytes",
    "transmit_packets",
    "transmit_errs",
    "transmit_drop",
    "transmit_fifo",
    "transmit_colls",
    "transmit_carrier",
    "transmit_compressed",
)
"""Column names in file order, spelled as node_exporter 1.5.0 names them (its legacy,
non-"detailed" names: errs, drop, colls), so that `node_network_<field>_total` is the
node_exporter series name."""

_UNSIGNED = re.compile(r"[0-9]+")
# dev_valid_name(): at most 15 bytes, no '/', ':' or whitespace. We also refuse
# characters that could not appear in a label value we would want to print raw.
_IFACE_NAME = re.compile(r"[^\s:/]{1,15}")

NetDevCounters = dict[str, dict[str, int]]


def parse_netdev(text: str) -> NetDevCounters:
    """Parse /proc/net/dev into {interface: {field: value}} with every field of NETDEV_FIELDS.

    Raises ParseError on a missing header, a line without a colon, a bad interface
    name, a column count other than 16, a non-integer counter, or a repeated interface.
    """
    lines = text.splitlines()
    if len(lines) < 2:
        raise ParseError(f"line {len(lines) + 1}: missing the two header lines of /proc/net/dev")
    for number in (1, 2):
        if "|" not in lines[number - 1]:
            raise ParseError(f"line {number}: expected a header line with '|' separators")

    counters: NetDevCounters = {}
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        name_part, colon, values_part = line.partition(":")
        if not colon:
            raise ParseError(f"line {number}: no ':' after the interface name")
        name = name_part.strip()
        if not _IFACE_NAME.fullmatch(name):
            raise ParseError(f"line {number}: invalid interface name {name!r}")
        if name in counters:
            raise ParseError(f"line {number}: interface {name!r} listed twice")
        tokens = values_part.split()
        if len(tokens) != len(NETDEV_FIELDS):
            raise ParseError(
                f"line {number}: interface {name!r} has {len(tokens)} counters, expected {len(NETDEV_FIELDS)}"
            )
        values: dict[str, int] = {}
        for field, token in zip(NETDEV_FIELDS, tokens, strict=True):
            if not _UNSIGNED.fullmatch(token):
                raise ParseError(f"line {number}: {field} of {name!r} is not an unsigned integer: {token!r}")
            values[field] = int(token)
        counters[name] = values
    return counters


def netdev_metrics(parsed: NetDevCounters) -> list[Metric]:
    """Name the counters as node_exporter's netdev collector does:
    `node_network_<field>_total{device="<iface>"}`.

    Every interface is included, `lo` too: node_exporter upstream keeps it by default
    (Debian's package excludes it with `--collector.netdev.device-exclude=^lo$`), and
    whether loopback traffic matters is a check's decision, not the parser's.
    """
    metrics: list[Metric] = []
    for device, values in parsed.items():
        labels = {"device": device}
        for field, value in values.items():
            metrics.append((f"node_network_{field}_total", dict(labels), float(value)))
    return metrics
