"""Parse /proc/softirqs: softirq runs per vector and per CPU.

Why: NET_RX counts concentrated on one CPU while the others idle is the signature
of receive processing that RSS/RPS does not spread. /proc/stat's `softirq` line only
has all-CPU totals; this file has the per-CPU split.

Shape (kernel/softirq.c, fs/proc/softirqs.c): a header "CPU0 CPU1 ..." naming the
*possible* CPUs (so offline CPUs appear, with frozen counts), then one row per
vector "NET_RX:  123  456". Columns are mapped to CPU ids through the header, never
by position, so a sparse CPU numbering stays right.
"""

from __future__ import annotations

import re

from netdoctor.errors import ParseError
from netdoctor.sources.parsers import Metric

_CPU_HEADER = re.compile(r"CPU([0-9]+)")
_UINT = re.compile(r"[0-9]+")
_VECTOR = re.compile(r"[A-Za-z0-9_]+")


def parse_cpu_header(line: str, number: int) -> list[int]:
    """ "CPU0 CPU1 CPU3" -> [0, 1, 3]; shared with /proc/interrupts."""
    cpus: list[int] = []
    for token in line.split():
        match = _CPU_HEADER.fullmatch(token)
        if not match:
            raise ParseError(f"line {number}: {token!r} in the header is not CPUn")
        cpus.append(int(match.group(1)))
    if not cpus:
        raise ParseError(f"line {number}: header names no CPU")
    if len(set(cpus)) != len(cpus):
        raise ParseError(f"line {number}: a CPU repeats in the header")
    return cpus


def parse_softirqs(text: str) -> dict[str, dict[int, int]]:
    """{"NET_RX": {0: 222963, 1: 316000}, ...}."""
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ParseError("line 1: softirqs is empty")
    cpus = parse_cpu_header(lines[0][1], lines[0][0])
    parsed: dict[str, dict[int, int]] = {}
    for number, line in lines[1:]:
        name, colon, rest = line.partition(":")
        name = name.strip()
        if not colon or not _VECTOR.fullmatch(name):
            raise ParseError(f"line {number}: expected 'VECTOR: counts', got {line.strip()!r}")
        counts = rest.split()
        if len(counts) != len(cpus):
            raise ParseError(f"line {number}: {name} has {len(counts)} counts for {len(cpus)} CPUs")
        bad = next((count for count in counts if not _UINT.fullmatch(count)), None)
        if bad is not None:
            raise ParseError(f"line {number}: {bad!r} is not a count")
        if name in parsed:
            raise ParseError(f"line {number}: {name} appears twice")
        parsed[name] = {cpu: int(count) for cpu, count in zip(cpus, counts, strict=True)}
    return parsed


def softirqs_metrics(parsed: dict[str, dict[int, int]]) -> list[Metric]:
    """`node_softirqs_functions_total{cpu,type}`, the name of newer node_exporter's softirqs collector.

    node_exporter 1.5.0 has no softirqs collector (only the all-CPU
    `node_softirqs_total{vector}` from /proc/stat behind --collector.stat.softirq), so
    on a 1.5.0 Prometheus these per-CPU series do not exist; the name and labels are
    the ones later releases use, so a newer exporter answers the same query.
    """
    return [
        ("node_softirqs_functions_total", {"cpu": str(cpu), "type": vector}, float(count))
        for vector, per_cpu in parsed.items()
        for cpu, count in sorted(per_cpu.items())
    ]
