"""Parsers for /proc/net/snmp, /proc/net/netstat and /proc/net/snmp6: the kernel's protocol MIB counters.

These hold most of what a network diagnosis needs beyond interfaces: TCP retransmits
(`Tcp: RetransSegs`), listen-queue overflows (`TcpExt: ListenOverflows`), UDP buffer
errors, IP reassembly failures.

/proc/net/snmp and /proc/net/netstat share one shape: pairs of lines, a header
("Tcp: RtoAlgorithm RtoMin ...") then its values ("Tcp: 1 200 ..."). The field set
grows with every kernel (TcpExt gained ~40 fields between 4.4 and 6.x, MPTcpExt
appeared in 5.6), so fields are read by name, never by position. Values are signed:
`Tcp: MaxConn` is -1 on Linux. `IcmpMsg` is special: the kernel prints only the
non-zero ICMP types, at most 16 per line pair, so it can appear several times, or not
at all; its sections are merged here (node_exporter keeps only the last one).

/proc/net/snmp6 is one "Name value" pair per line ("Ip6InReceives 123"); the protocol
is the name up to and including its first '6' (Ip6, Icmp6, Udp6, UdpLite6), exactly as
node_exporter splits it. It is absent when IPv6 is disabled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from netdoctor.errors import ParseError
from netdoctor.sources.parsers import Metric

ProtocolCounters = dict[str, dict[str, int]]

_SIGNED = re.compile(r"-?[0-9]+")
# Protocol and field names become part of a Prometheus metric name, so they must be
# made of metric-name characters.
_NAME = re.compile(r"[A-Za-z0-9_]+")
# Sections that the kernel may split over several line pairs (see module docstring).
_MULTI_SECTION_PROTOCOLS = frozenset({"IcmpMsg"})


def _signed_int(token: str, number: int, what: str) -> int:
    if not _SIGNED.fullmatch(token):
        raise ParseError(f"line {number}: {what} is not an integer: {token!r}")
    return int(token)


def _protocol_of(token: str, number: int) -> str:
    if not token.endswith(":") or not _NAME.fullmatch(token[:-1]):
        raise ParseError(f"line {number}: expected 'Protocol:' at the start of the line, got {token!r}")
    return token[:-1]


def parse_snmp(text: str) -> ProtocolCounters:
    """Parse /proc/net/snmp or /proc/net/netstat into {protocol: {field: value}}.

    Raises ParseError when a header line has no value line, the two lines name
    different protocols or have different field counts, a value is not an integer, a
    field repeats, or a protocol other than IcmpMsg repeats.
    """
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if len(lines) % 2:
        number, line = lines[-1]
        raise ParseError(f"line {number}: header line without its value line")

    parsed: ProtocolCounters = {}
    for (header_number, header_line), (value_number, value_line) in zip(
        lines[0::2], lines[1::2], strict=True
    ):
        header = header_line.split()
        values = value_line.split()
        protocol = _protocol_of(header[0], header_number)
        value_protocol = _protocol_of(values[0], value_number)
        if value_protocol != protocol:
            raise ParseError(
                f"line {value_number}: values are for {value_protocol!r} but the header above is {protocol!r}"
            )
        if len(values) != len(header):
            raise ParseError(
                f"line {value_number}: {protocol} has {len(header) - 1} fields but {len(values) - 1} values"
            )
        if protocol in parsed and protocol not in _MULTI_SECTION_PROTOCOLS:
            raise ParseError(f"line {header_number}: protocol {protocol!r} appears twice")
        fields = parsed.setdefault(protocol, {})
        for field, token in zip(header[1:], values[1:], strict=True):
            if not _NAME.fullmatch(field):
                raise ParseError(f"line {header_number}: invalid field name {field!r} in {protocol}")
            if field in fields:
                raise ParseError(f"line {header_number}: field {protocol} {field} appears twice")
            fields[field] = _signed_int(token, value_number, f"{protocol} {field}")
    return parsed


def parse_snmp6(text: str) -> ProtocolCounters:
    """Parse /proc/net/snmp6 into {protocol: {field: value}}, e.g. {"Ip6": {"InReceives": 1}}.

    A name without a '6' is skipped, as node_exporter does (the per-interface
    /proc/net/dev_snmp6/<iface> files start with such a line, "ifIndex 2").
    Raises ParseError on a line that is not exactly "name value", a non-integer value,
    a name with nothing after its '6', or a repeated name.
    """
    parsed: ProtocolCounters = {}
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 2:
            raise ParseError(f"line {number}: expected 'Name value', got {len(tokens)} columns")
        name, token = tokens
        if not _NAME.fullmatch(name):
            raise ParseError(f"line {number}: invalid counter name {name!r}")
        six = name.find("6")
        if six == -1:
            continue
        protocol, field = name[: six + 1], name[six + 1 :]
        if not field:
            raise ParseError(f"line {number}: counter name {name!r} has no field after the protocol")
        fields = parsed.setdefault(protocol, {})
        if field in fields:
            raise ParseError(f"line {number}: counter {name} appears twice")
        fields[field] = _signed_int(token, number, name)
    return parsed


def merge_netstat(
    netstat: Mapping[str, Mapping[str, int]],
    snmp: Mapping[str, Mapping[str, int]],
    snmp6: Mapping[str, Mapping[str, int]] | None = None,
) -> ProtocolCounters:
    """Combine the three files the way node_exporter's netstat collector does.

    A protocol section of /proc/net/snmp replaces the one of the same name from
    /proc/net/netstat, and /proc/net/snmp6 replaces both (in practice the names never
    collide). `snmp6` is None when IPv6 is disabled and the file is absent.
    """
    merged: ProtocolCounters = {protocol: dict(fields) for protocol, fields in netstat.items()}
    for source in (snmp, snmp6 or {}):
        for protocol, fields in source.items():
            merged[protocol] = dict(fields)
    return merged


def netstat_metrics(parsed: Mapping[str, Mapping[str, int]]) -> list[Metric]:
    """Name every counter as node_exporter's netstat collector does with
    `--collector.netstat.fields='.*'`: `node_netstat_<Protocol>_<Field>`, no labels.

    Pass the output of `parse_snmp`, `parse_snmp6`, or `merge_netstat` of all three.
    """
    return [
        (f"node_netstat_{protocol}_{field}", {}, float(value))
        for protocol, fields in parsed.items()
        for field, value in fields.items()
    ]
