"""Parser for /proc/net/sockstat and /proc/net/sockstat6: socket counts and memory per protocol.

Why it matters: `TCP: tw` is the TIME_WAIT build-up behind ephemeral-port exhaustion,
`TCP: orphan` and `TCP: mem` (in pages) are what the kernel compares with
tcp_max_orphans and tcp_mem before it starts killing connections.

Shape: one line per protocol, "PROTO: key value key value ...":

    sockets: used 211
    TCP: inuse 9 orphan 0 tw 19 alloc 47 mem 22
    UDP: inuse 2 mem 0
    UDPLITE: inuse 0
    RAW: inuse 0
    FRAG: inuse 0 memory 0

sockstat6 has the same shape with TCP6, UDP6, UDPLITE6, RAW6, FRAG6 and no
"sockets" line; it is absent when IPv6 is disabled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from netdoctor.errors import ParseError
from netdoctor.sources.parsers import Metric

SocketCounts = dict[str, dict[str, int]]

SOCKSTAT_KEYS: tuple[str, ...] = ("inuse", "orphan", "tw", "alloc", "mem", "memory")
"""The keys node_exporter exports, in its order; any other key is parsed but not named."""

_SIGNED = re.compile(r"-?[0-9]+")
_NAME = re.compile(r"[A-Za-z0-9_]+")


def parse_sockstat(text: str) -> SocketCounts:
    """Parse sockstat or sockstat6 into {protocol: {key: value}}.

    "sockets: used N" becomes {"sockets": {"used": N}}.

    Raises ParseError on a line without at least one key/value pair, an odd number of
    tokens after the protocol, a non-integer value, or a repeated protocol or key.
    """
    parsed: SocketCounts = {}
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        head = tokens[0]
        if not head.endswith(":") or not _NAME.fullmatch(head[:-1]):
            raise ParseError(f"line {number}: expected 'PROTOCOL:' at the start of the line, got {head!r}")
        protocol = head[:-1]
        pairs = tokens[1:]
        if not pairs:
            raise ParseError(f"line {number}: {protocol} has no key/value pairs")
        if len(pairs) % 2:
            raise ParseError(f"line {number}: {protocol} has an odd number of tokens after the protocol")
        if protocol in parsed:
            raise ParseError(f"line {number}: protocol {protocol!r} appears twice")
        values: dict[str, int] = {}
        for key, token in zip(pairs[0::2], pairs[1::2], strict=True):
            if not _NAME.fullmatch(key):
                raise ParseError(f"line {number}: invalid key {key!r} in {protocol}")
            if key in values:
                raise ParseError(f"line {number}: key {key!r} appears twice in {protocol}")
            if not _SIGNED.fullmatch(token):
                raise ParseError(f"line {number}: {protocol} {key} is not an integer: {token!r}")
            values[key] = int(token)
        parsed[protocol] = values
    return parsed


def sockstat_metrics(
    parsed: Mapping[str, Mapping[str, int]], *, ipv6: bool, page_size: int = 4096
) -> list[Metric]:
    """Name the counts as node_exporter 1.5.0's sockstat collector does.

    `node_sockstat_sockets_used` (IPv4 file only), `node_sockstat_<PROTO>_<key>` for
    the keys in SOCKSTAT_KEYS that the line has (protocol names as the file spells
    them, so sockstat6 gives `node_sockstat_TCP6_inuse`), and
    `node_sockstat_<PROTO>_mem_bytes` = mem pages x `page_size` (node_exporter uses
    the page size of the host it runs on; pass the one of the host the file came from).

    One difference, on purpose: node_exporter reports `<PROTO>_inuse` as 0 for a line
    without an "inuse" key; we report nothing, since no kernel omits it and a made-up
    zero would read as "healthy".
    """
    metrics: list[Metric] = []
    used = parsed.get("sockets", {}).get("used")
    if not ipv6 and used is not None:
        metrics.append(("node_sockstat_sockets_used", {}, float(used)))
    for protocol, values in parsed.items():
        if protocol == "sockets":
            continue
        for key in SOCKSTAT_KEYS:
            if key in values:
                metrics.append((f"node_sockstat_{protocol}_{key}", {}, float(values[key])))
        if "mem" in values:
            metrics.append((f"node_sockstat_{protocol}_mem_bytes", {}, float(values["mem"] * page_size)))
    return metrics
