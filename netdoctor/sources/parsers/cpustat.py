"""Parse /proc/stat: CPU time per mode, interrupts, context switches, forks, procs.

Why: the softirq share of one CPU (`node_cpu_seconds_total{mode="softirq"}`) is how
"all receive work lands on CPU 0" shows up, and the `cpuN` lines are the kernel's
own list of *online* CPUs (fs/proc/stat.c walks for_each_online_cpu), which other
files need to map their rows to CPU ids.

`cpu` lines carry ticks of USER_HZ (100 on every Linux ABI) in this order:
user nice system idle iowait irq softirq steal guest guest_nice. Kernels before
2.6.11 lack steal, before 2.6.24 guest, before 2.6.33 guest_nice; a missing column
is None (not 0) and produces no series.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from netdoctor.errors import ParseError
from netdoctor.sources.parsers import Metric

USER_HZ = 100
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
# node_exporter (procfs) names the positions of the `softirq` line this way, whatever
# the kernel calls vector 5 (BLOCK_IOPOLL before 4.5, IRQ_POLL after).
SOFTIRQ_VECTORS = (
    "hi",
    "timer",
    "net_tx",
    "net_rx",
    "block",
    "block_iopoll",
    "tasklet",
    "sched",
    "hrtimer",
    "rcu",
)
_CPU_NAME = re.compile(r"cpu([0-9]*)")
_UINT = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class CpuTimes:
    """Ticks (1/USER_HZ s) per mode of one CPU line; None where this kernel has no column."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int | None = None
    irq: int | None = None
    softirq: int | None = None
    steal: int | None = None
    guest: int | None = None
    guest_nice: int | None = None

    def ticks(self, mode: str) -> int | None:
        return getattr(self, mode)


@dataclass
class StatInfo:
    cpus: dict[int, CpuTimes] = field(default_factory=dict)  # online CPU id -> times
    total: CpuTimes | None = None  # the aggregate `cpu` line
    interrupts_total: int | None = None  # first number of `intr`
    context_switches: int | None = None  # ctxt
    boot_time: int | None = None  # btime, seconds since the epoch
    forks: int | None = None  # processes
    procs_running: int | None = None
    procs_blocked: int | None = None
    softirqs_total: int | None = None  # first number of `softirq`
    softirqs: dict[str, int] = field(default_factory=dict)  # SOFTIRQ_VECTORS name -> count


def _uints(fields: list[str], number: int) -> list[int]:
    bad = next((value for value in fields if not _UINT.fullmatch(value)), None)
    if bad is not None:
        raise ParseError(f"line {number}: {bad!r} is not a non-negative integer")
    return [int(value) for value in fields]


def parse_stat(text: str) -> StatInfo:
    info = StatInfo()
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        key, values = fields[0], fields[1:]
        cpu_match = _CPU_NAME.fullmatch(key)
        if cpu_match:
            if not 4 <= len(values) <= len(CPU_MODES):
                raise ParseError(f"line {number}: {key} has {len(values)} columns, expected 4-{len(CPU_MODES)}")
            times = CpuTimes(**dict(zip(CPU_MODES, _uints(values, number), strict=False)))
            if cpu_match.group(1):
                cpu = int(cpu_match.group(1))
                if cpu in info.cpus:
                    raise ParseError(f"line {number}: {key} appears twice")
                info.cpus[cpu] = times
            else:
                info.total = times
            continue
        if key in seen:
            raise ParseError(f"line {number}: {key} appears twice")
        seen.add(key)
        if key in ("intr", "softirq"):
            if not values:
                raise ParseError(f"line {number}: {key} has no total")
            numbers = _uints(values, number)
            if key == "intr":
                info.interrupts_total = numbers[0]
            else:
                info.softirqs_total = numbers[0]
                info.softirqs = dict(zip(SOFTIRQ_VECTORS, numbers[1:], strict=False))
        elif key in ("ctxt", "btime", "processes", "procs_running", "procs_blocked"):
            if len(values) != 1:
                raise ParseError(f"line {number}: {key} should have one value, has {len(values)}")
            value = _uints(values, number)[0]
            attribute = {"ctxt": "context_switches", "btime": "boot_time", "processes": "forks"}.get(key, key)
            setattr(info, attribute, value)
        # other lines (page, swap, disk_io on 2.4 kernels) are not needed
    if not info.cpus:
        raise ParseError("line 1: no cpuN line in /proc/stat")
    return info


def online_cpus(info: StatInfo) -> list[int]:
    """Online CPU ids, ascending: the cpuN lines of /proc/stat."""
    return sorted(info.cpus)


def stat_metrics(info: StatInfo) -> list[Metric]:
    """node_exporter 1.5.0's cpu and stat collector series.

    cpu collector: `node_cpu_seconds_total{cpu,mode}` for user nice system idle iowait
    irq softirq steal (guest time is already inside user/nice, so it is not a mode)
    and `node_cpu_guest_seconds_total{cpu,mode="user"|"nice"}`. stat collector:
    `node_intr_total`, `node_context_switches_total`, `node_forks_total`,
    `node_boot_time_seconds`, `node_procs_running`, `node_procs_blocked`, and with
    `--collector.stat.softirq` `node_softirqs_total{vector}` (all-CPU totals per vector).
    """
    metrics: list[Metric] = []
    for cpu in sorted(info.cpus):
        times = info.cpus[cpu]
        for mode in CPU_MODES[:8]:
            ticks = times.ticks(mode)
            if ticks is not None:
                metrics.append(("node_cpu_seconds_total", {"cpu": str(cpu), "mode": mode}, ticks / USER_HZ))
        for mode, column in (("user", "guest"), ("nice", "guest_nice")):
            ticks = times.ticks(column)
            if ticks is not None:
                metrics.append(("node_cpu_guest_seconds_total", {"cpu": str(cpu), "mode": mode}, ticks / USER_HZ))
    scalars = (
        ("node_intr_total", info.interrupts_total),
        ("node_context_switches_total", info.context_switches),
        ("node_forks_total", info.forks),
        ("node_boot_time_seconds", info.boot_time),
        ("node_procs_running", info.procs_running),
        ("node_procs_blocked", info.procs_blocked),
    )
    metrics.extend((name, {}, float(value)) for name, value in scalars if value is not None)
    metrics.extend(("node_softirqs_total", {"vector": vector}, float(count)) for vector, count in info.softirqs.items())
    return metrics
