"""Parse /proc/net/softnet_stat: per-CPU packet processing in the receive softirq.

Why this file matters: `dropped` counts packets thrown away because a CPU's input
backlog (net.core.netdev_max_backlog) was full, and `time_squeeze` counts NAPI
polls cut short by net.core.netdev_budget / netdev_budget_usecs. Both point at one
CPU drowning in receive work (IRQs pinned to it, no RSS/RPS spread).

The shape varies by kernel (net/core/net-procfs.c, softnet_seq_show), all columns hex:

    col 0 processed, 1 dropped, 2 time_squeeze, 3-7 zero, 8 cpu_collision,
    9 received_rps (2.6.35+), 10 flow_limit_count (3.13+),
    11 softnet_backlog_len, 12 cpu index (5.10+), 13 input_qlen, 14 process_qlen (6.9+)

Rows are the *online* CPUs only, so the row number is the CPU id only when every CPU
is online; from 5.10 the index column says which CPU a row is. Without it the caller
may pass the online CPU ids (from /proc/stat) to map rows to CPUs.

Every counter is an `unsigned int` printed with %08x: it wraps at 2**32, which is
why `SOFTNET_WRAP32` names them for the rate code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from netdoctor.errors import ParseError
from netdoctor.sources.parsers import Metric

MIN_COLUMNS = 10
KNOWN_COLUMNS = 15  # columns are only ever appended: later ones are ignored, the known ones still read
_HEX32 = re.compile(r"[0-9a-fA-F]{1,8}")

SOFTNET_WRAP32: frozenset[str] = frozenset(
    {
        "node_softnet_processed_total",
        "node_softnet_dropped_total",
        "node_softnet_times_squeezed_total",
        "node_softnet_cpu_collision_total",
        "node_softnet_received_rps_total",
        "node_softnet_flow_limit_count_total",
    }
)


@dataclass(frozen=True)
class SoftnetRow:
    """One CPU's row. `cpu` is the index column when present, else the online-CPU id or row number."""

    cpu: int
    processed: int
    dropped: int
    time_squeeze: int
    cpu_collision: int
    received_rps: int
    flow_limit_count: int | None  # None before 3.13
    backlog_len: int | None  # None before 5.10
    index: int | None  # the kernel's own CPU id column, 5.10+
    input_qlen: int | None = None  # 6.9+
    process_qlen: int | None = None  # 6.9+
    cpu_is_exact: bool = True  # False when `cpu` is only the row number (old kernel, no CPU list given)


def parse_softnet(text: str, online_cpus: Sequence[int] | None = None) -> list[SoftnetRow]:
    """Rows of /proc/net/softnet_stat.

    `online_cpus` (sorted online CPU ids, e.g. from `cpustat.online_cpus`) maps rows to
    CPUs on kernels without the index column; it must have one id per row.
    """
    rows: list[SoftnetRow] = []
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ParseError("line 1: softnet_stat is empty")
    if online_cpus is not None and len(online_cpus) != len(lines):
        online_cpus = None  # CPU went on/offline between the two reads: fall back to row numbers
    width: int | None = None
    for row_number, (number, line) in enumerate(lines):
        fields = line.split()
        if len(fields) < MIN_COLUMNS:
            raise ParseError(f"line {number}: {len(fields)} columns, expected at least {MIN_COLUMNS}")
        if width is None:
            width = len(fields)
        elif len(fields) != width:
            raise ParseError(f"line {number}: {len(fields)} columns, line 1 has {width}")
        bad = next((field for field in fields if not _HEX32.fullmatch(field)), None)
        if bad is not None:
            raise ParseError(f"line {number}: {bad!r} is not a 32-bit hex counter")
        values = [int(field, 16) for field in fields]
        index = values[12] if len(values) > 12 else None
        if index is not None:
            cpu, exact = index, True
        elif online_cpus is not None:
            cpu, exact = online_cpus[row_number], True
        else:
            cpu, exact = row_number, False
        rows.append(
            SoftnetRow(
                cpu=cpu,
                processed=values[0],
                dropped=values[1],
                time_squeeze=values[2],
                cpu_collision=values[8],
                received_rps=values[9],
                flow_limit_count=values[10] if len(values) > 10 else None,
                backlog_len=values[11] if len(values) > 11 else None,
                index=index,
                input_qlen=values[13] if len(values) > 13 else None,
                process_qlen=values[14] if len(values) > 14 else None,
                cpu_is_exact=exact,
            )
        )
    cpus = [row.cpu for row in rows]
    if len(set(cpus)) != len(cpus):
        raise ParseError("line 1: the same CPU index appears on two rows")
    return rows


def softnet_metrics(rows: Sequence[SoftnetRow]) -> list[Metric]:
    """node_exporter's softnet series.

    node_exporter 1.5.0 emits processed, dropped and times_squeezed with cpu = row
    number; newer releases label by the index column and add cpu_collision,
    received_rps, flow_limit_count and backlog_len. netdoctor labels by the real CPU
    id (equal to 1.5.0's label whenever every CPU is online) and emits the newer
    series where the kernel has the column.
    """
    metrics: list[Metric] = []
    for row in rows:
        labels = {"cpu": str(row.cpu)}
        metrics.append(("node_softnet_processed_total", dict(labels), float(row.processed)))
        metrics.append(("node_softnet_dropped_total", dict(labels), float(row.dropped)))
        metrics.append(("node_softnet_times_squeezed_total", dict(labels), float(row.time_squeeze)))
        metrics.append(("node_softnet_cpu_collision_total", dict(labels), float(row.cpu_collision)))
        metrics.append(("node_softnet_received_rps_total", dict(labels), float(row.received_rps)))
        if row.flow_limit_count is not None:
            metrics.append(("node_softnet_flow_limit_count_total", dict(labels), float(row.flow_limit_count)))
        if row.backlog_len is not None:
            metrics.append(("node_softnet_backlog_len", dict(labels), float(row.backlog_len)))
    return metrics
