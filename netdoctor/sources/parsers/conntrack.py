"""Parse /proc/net/stat/nf_conntrack and name conntrack numbers as node_exporter does.

Why: `insert_failed`, `drop` and `early_drop` rising means new connections are being
refused because the conntrack table is full (or its hash chains too long) — the
classic "random packet loss under load" with no NIC error anywhere.

The file (net/netfilter/nf_conntrack_standalone.c, ct_cpu_seq_show) is a header line
and one row of 17 hex fields per *possible* CPU. The kernel kept the 17 positions
but renamed some over time: column 1 `searched` became `clashres` (5.9), column 7
`delete_list` became `chainlength` (5.17); `new`, `ignore`, `delete` print 0 on
newer kernels. Rows are keyed by the header's own names, so whatever a kernel calls
a column is what the dict says. Column 0 `entries` is the table-wide count repeated
on every row: it must never be summed. It needs CONFIG_NF_CONNTRACK_PROCFS.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from netdoctor.errors import ParseError
from netdoctor.sources.parsers import Metric

# The fields node_exporter's conntrack collector sums over CPUs (procfs ConntrackStatEntry).
NODE_EXPORTER_STAT_FIELDS = (
    "found",
    "invalid",
    "ignore",
    "insert",
    "insert_failed",
    "drop",
    "early_drop",
    "search_restart",
)
_HEX = re.compile(r"[0-9a-fA-F]{1,16}")
_NAME = re.compile(r"[a-z_]+")


def parse_conntrack_stat(text: str) -> list[dict[str, int]]:
    """One {header name: value} dict per CPU row, in file order (row n = n-th possible CPU)."""
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ParseError("line 1: nf_conntrack stat file is empty")
    header_number, header_line = lines[0]
    header = header_line.split()
    if not header or header[0] != "entries" or not all(_NAME.fullmatch(name) for name in header):
        raise ParseError(f"line {header_number}: header does not start with 'entries': {header_line.strip()!r}")
    if len(set(header)) != len(header):
        raise ParseError(f"line {header_number}: a column name repeats in the header")
    rows: list[dict[str, int]] = []
    for number, line in lines[1:]:
        fields = line.split()
        if len(fields) != len(header):
            raise ParseError(f"line {number}: {len(fields)} fields, header has {len(header)}")
        bad = next((field for field in fields if not _HEX.fullmatch(field)), None)
        if bad is not None:
            raise ParseError(f"line {number}: {bad!r} is not a hex counter")
        rows.append({name: int(field, 16) for name, field in zip(header, fields, strict=True)})
    if not rows:
        raise ParseError(f"line {header_number}: header but no CPU rows")
    return rows


def conntrack_stat_metrics(rows: Sequence[dict[str, int]]) -> list[Metric]:
    """node_exporter's summed `node_nf_conntrack_stat_<field>` plus per-CPU extension series.

    node_exporter sums each field over all rows (procfs reads them by position, which
    matches these header names on every kernel since 2.6.35). The per-CPU form
    `netdoctor_nf_conntrack_stat_<field>{cpu="N"}` has every column except
    `entries`; `cpu` is the row number, which is the CPU id because the possible-CPU
    mask is contiguous on every real machine.
    """
    metrics: list[Metric] = []
    for field in NODE_EXPORTER_STAT_FIELDS:
        if rows and all(field in row for row in rows):
            metrics.append((f"node_nf_conntrack_stat_{field}", {}, float(sum(row[field] for row in rows))))
    for cpu, row in enumerate(rows):
        for field, value in row.items():
            if field == "entries":
                continue
            metrics.append((f"netdoctor_nf_conntrack_stat_{field}", {"cpu": str(cpu)}, float(value)))
    return metrics


def conntrack_metrics(count: int, limit: int) -> list[Metric]:
    """nf_conntrack_count and nf_conntrack_max as node_exporter names them."""
    return [
        ("node_nf_conntrack_entries", {}, float(count)),
        ("node_nf_conntrack_entries_limit", {}, float(limit)),
    ]
