"""What each fix writes. Planning reads; it never writes (dry-run is planning plus a diff).

Defaults come from the diagnosis: each planner takes the parameters the matching
check proposed (its FixSuggestion.params), so the judgement stays in the checks and
the fix only carries it out. Flags override them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netdoctor.fixes.runner import Plan
from netdoctor.fixes.writer import ETHTOOL, FILE, KERNEL, SERVICE, Change, FixFailed, Writer
from netdoctor.model import Finding
from netdoctor.sources.inventory import Inventory

HEADER = "# Written by `netdoctor fix --{fix}`. A re-run rewrites this file; `netdoctor fix --rollback` restores it.\n"
SYSCTL_D = "etc/sysctl.d/90-netdoctor-{fix}.conf"
UDEV_RULE = "etc/udev/rules.d/90-netdoctor-{fix}-{iface}.rules"
# scaling.rst ("RFS configuration"): 32768 for a moderately loaded server.
RPS_SOCK_FLOW_ENTRIES = 32768
# 4096-byte page / 8-byte hlist_nulls_head: the kernel's unit for the conntrack hash size.
HASH_BUCKETS_PER_PAGE = 512


@dataclass
class FixContext:
    writer: Writer
    inventory: Inventory | None = None
    findings: list[Finding] = field(default_factory=list)
    memory_bytes: float | None = None

    def suggested(self, fix_id: str, interface: str | None = None) -> dict[str, Any]:
        """Parameters the diagnosis proposed for this fix (and interface), merged."""
        params: dict[str, Any] = {}
        for finding in self.findings:
            for fix in finding.fixes:
                if fix.fix_id != fix_id:
                    continue
                if interface and fix.params.get("interface") not in (None, interface):
                    continue
                params.update(fix.params)
        return params


def _kernel(writer: Writer, rel: str, value: Any, why: str = "") -> Change:
    # Newline-terminated, as the kernel prints it, so a tree written by a fix reads like a real one.
    return writer.read_before(Change(KERNEL, rel, f"{value}\n", why=why))


def _file(writer: Writer, rel: str, content: str) -> Change:
    return writer.read_before(Change(FILE, rel, content))


def _sysctl_rel(name: str) -> str:
    return "proc/sys/" + name.replace(".", "/")


def _sysctl_file(fix: str, values: Mapping[str, Any]) -> str:
    body = "".join(f"{name} = {value}\n" for name, value in values.items())
    return HEADER.format(fix=fix) + body


def _current_int(writer: Writer, rel: str) -> int:
    text = writer.read(Change(KERNEL, rel, ""))
    try:
        return int((text or "").split()[0])
    except (ValueError, IndexError) as exc:
        raise FixFailed(f"/{rel} holds {text!r}, not a number") from exc


def _sysctl_plan(ctx: FixContext, fix: str, summary: str, values: dict[str, Any], why: dict[str, str]) -> Plan:
    writer = ctx.writer
    changes = [_kernel(writer, _sysctl_rel(name), value, why.get(name, "")) for name, value in values.items()]
    changes.append(_file(writer, SYSCTL_D.format(fix=fix), _sysctl_file(fix, values)))
    return Plan(fix, summary, changes)


# --- conntrack --------------------------------------------------------------------------------
def plan_conntrack(ctx: FixContext, max_entries: int | None = None) -> Plan:
    """Raise nf_conntrack_max and the hash size together; persist both; never lower."""
    from netdoctor.checks import conntrack as check

    writer = ctx.writer
    current = _current_int(writer, "proc/sys/net/netfilter/nf_conntrack_max")
    suggested = ctx.suggested("conntrack")
    target = max_entries if max_entries is not None else suggested.get("max")
    plan = Plan("conntrack", "", [])
    if target is None:
        plan.summary = f"nf_conntrack_max {current}: the diagnosis proposes no change"
        return plan
    target = int(target)
    divisor = int(check.THRESHOLDS["hash_divisor"])
    per_entry = float(check.THRESHOLDS["bytes_per_entry"])
    fraction = float(check.THRESHOLDS["max_memory_fraction"])
    # The kernel rounds the bucket count up to whole pages of 8-byte heads
    # (nf_ct_alloc_hashtable): ask for that, so the read-back matches what we wrote.
    hashsize = -(-max(target // divisor, 1) // HASH_BUCKETS_PER_PAGE) * HASH_BUCKETS_PER_PAGE
    plan.summary = f"nf_conntrack_max {current} -> {target}, hashsize -> {hashsize}"
    if target < current:
        plan.refusals.append(
            f"--max {target} is below the current {current}: netdoctor only raises it (kube-proxy and others "
            "size the table at start; lowering can drop live connections)"
        )
    if ctx.memory_bytes is not None and target * per_entry > ctx.memory_bytes * fraction:
        plan.refusals.append(
            f"{target} entries x {per_entry:.0f} B = {target * per_entry / 2**20:.0f} MiB is more than "
            f"{fraction:.0%} of memory ({ctx.memory_bytes / 2**20:.0f} MiB)"
        )
    if target <= 0:
        plan.refusals.append(f"--max {target}: must be positive")
    if ctx.memory_bytes is None:
        plan.notes.append("total memory unknown (no /proc/meminfo): the table size was not checked against it")
    changes = [_kernel(writer, "proc/sys/net/netfilter/nf_conntrack_max", target, "table size")]
    hash_rel = "sys/module/nf_conntrack/parameters/hashsize"
    if os.path.exists(writer.path(hash_rel)):
        current_hash = _current_int(writer, hash_rel)
        if hashsize > current_hash:
            changes.append(_kernel(writer, hash_rel, hashsize, f"max/{divisor}: short bucket chains"))
        changes.append(
            _file(
                writer,
                "etc/modprobe.d/netdoctor-conntrack.conf",
                HEADER.format(fix="conntrack") + f"options nf_conntrack hashsize={max(hashsize, current_hash)}\n",
            )
        )
    else:
        plan.notes.append("nf_conntrack's hashsize parameter is not exposed here; only the limit is raised")
    changes.append(
        _file(
            writer,
            SYSCTL_D.format(fix="conntrack"),
            _sysctl_file("conntrack", {"net.netfilter.nf_conntrack_max": target}),
        )
    )
    plan.changes = changes
    return plan


# --- ports and backlogs --------------------------------------------------------------------
def plan_ports(ctx: FixContext, port_range: tuple[int, int] | None = None, tw_reuse: bool | None = None) -> Plan:
    """Widen ip_local_port_range and/or set tcp_tw_reuse=1; persisted in one sysctl.d file.

    Refused: a range outside 1024-65535 or upside down, and a range with fewer ports than
    now (this fix widens; narrowing would make the exhaustion it answers worse).
    """
    suggested = ctx.suggested("ports")
    if port_range is None and suggested.get("port_range"):
        low, high = suggested["port_range"]
        port_range = (int(low), int(high))
    if tw_reuse is None:
        tw_reuse = bool(suggested.get("tcp_tw_reuse")) if suggested else None
    values: dict[str, Any] = {}
    why: dict[str, str] = {}
    refusals = []
    notes = []
    if port_range is not None:
        low, high = port_range
        if not (1024 <= low < high <= 65535):
            refusals.append(f"port range {low}-{high} must lie within 1024-65535 with low < high")
        else:
            current_text = ctx.writer.read(Change(KERNEL, _sysctl_rel("net.ipv4.ip_local_port_range"), ""))
            current = [int(p) for p in (current_text or "").split()[:2] if p.isdigit()]
            if len(current) == 2 and high - low < current[1] - current[0]:
                refusals.append(
                    f"port range {low}-{high} has {high - low + 1} ports, fewer than the current "
                    f"{current[0]}-{current[1]} ({current[1] - current[0] + 1}): this fix only widens"
                )
        values["net.ipv4.ip_local_port_range"] = f"{low} {high}"
        why["net.ipv4.ip_local_port_range"] = f"{high - low + 1} ephemeral ports"
        if suggested.get("reserved_ports"):
            listed = ",".join(str(p) for p in suggested["reserved_ports"])
            notes.append(
                f"listening ports {listed} fall inside the new range: consider adding them to "
                "net.ipv4.ip_local_reserved_ports so no outgoing connection takes them"
            )
    if tw_reuse:
        values["net.ipv4.tcp_tw_reuse"] = 1
        why["net.ipv4.tcp_tw_reuse"] = "reuse TIME_WAIT ports for new outgoing connections"
    if not values:
        return Plan("ports", "the diagnosis proposes no port change (give --port-range or --tw-reuse)", [])
    summary = ", ".join(f"{name.rsplit('.', 1)[-1]} = {value}" for name, value in values.items())
    plan = _sysctl_plan(ctx, "ports", summary, values, why)
    plan.refusals.extend(refusals)
    plan.notes.extend(notes)
    return plan


def plan_backlog(ctx: FixContext, values: Mapping[str, int] | None = None) -> Plan:
    """somaxconn, netdev_max_backlog, netdev_budget: only ever raised."""
    wanted: dict[str, int] = {}
    suggested = ctx.suggested("backlog")
    for name, value in (suggested.get("sysctls") or {}).items():
        wanted[name] = int(value)
    if suggested.get("somaxconn"):
        wanted["net.core.somaxconn"] = int(suggested["somaxconn"])
    wanted.update({k: int(v) for k, v in (values or {}).items()})
    if not wanted:
        return Plan("backlog", "the diagnosis proposes no backlog change", [])
    refusals = []
    for name, value in wanted.items():
        current = _current_int(ctx.writer, _sysctl_rel(name))
        if not 0 < value <= 2**31 - 1:
            refusals.append(f"{name}={value} must be a positive 32-bit integer")
        elif value < current:
            refusals.append(f"{name}={value} is below the current {current}: netdoctor only raises it")
    plan = _sysctl_plan(ctx, "backlog", "raise " + ", ".join(f"{k}={v}" for k, v in wanted.items()), wanted, {})
    plan.refusals.extend(refusals)
    return plan


# --- NIC: IRQ affinity, RSS/RPS, rings ---------------------------------------------------------
def _numa_cpus(ctx: FixContext, iface: str) -> tuple[list[int], int]:
    """(CPUs of the NIC's NUMA node first, then the others; how many are local).

    scaling.rst: keep a NIC's interrupts and receive processing near the device. Without
    a NUMA node (virtual NICs, single-node machines) every online CPU counts as local.
    """
    from netdoctor.errors import ParseError
    from netdoctor.sources.parsers.sysctl import parse_cpu_list

    online = list(ctx.inventory.cpus) if ctx.inventory and ctx.inventory.cpus else list(range(os.cpu_count() or 1))
    nic = ctx.inventory.nics.get(iface) if ctx.inventory else None
    if nic is None or nic.numa_node is None or nic.numa_node < 0:
        return online, len(online)
    try:
        with open(ctx.writer.path(f"sys/devices/system/node/node{nic.numa_node}/cpulist"), encoding="utf-8") as f:
            local = [c for c in parse_cpu_list(f.read()) if c in online]
    except (OSError, ValueError, ParseError):
        return online, len(online)
    if not local:
        return online, len(online)
    return local + [c for c in online if c not in local], len(local)


def _irqbalance_running(writer: Writer) -> int | None:
    proc = writer.path("proc")
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(os.path.join(proc, pid, "comm"), encoding="utf-8") as handle:
                if handle.read().strip() == "irqbalance":
                    return int(pid)
        except OSError:
            continue
    return None


def plan_irq_affinity(ctx: FixContext, iface: str, stop_irqbalance: bool = False) -> Plan:
    """One queue IRQ per CPU, NUMA-local CPUs first, as smp_affinity_list; a udev rule re-applies it.

    A NIC's configuration IRQ (virtio "-config", link-state) carries no traffic and is left alone.
    """
    if ctx.inventory is None:
        raise FixFailed("the IRQ layout is unknown (no live inventory)")
    irqs = sorted((i for i in ctx.inventory.irqs if i.interface == iface), key=lambda i: i.irq)
    queue_irqs = [i for i in irqs if not i.devices.rstrip().endswith("config")] or irqs
    plan = Plan("irq-affinity", "", [])
    if not queue_irqs:
        plan.summary = f"{iface} has no IRQ of its own in /proc/interrupts (virtual NIC, or the names differ)"
        plan.refusals.append(plan.summary)
        return plan
    cpus, _ = _numa_cpus(ctx, iface)
    kernel_changes = []
    for index, irq in enumerate(queue_irqs):
        cpu = cpus[index % len(cpus)]
        kernel_changes.append(_kernel(ctx.writer, f"proc/irq/{irq.irq}/smp_affinity_list", cpu, irq.devices))
    plan.changes.extend(kernel_changes)
    used = sorted({int(c.after) for c in kernel_changes})
    plan.summary = f"spread {len(queue_irqs)} queue IRQs of {iface} over CPUs {', '.join(map(str, used))}"
    pid = _irqbalance_running(ctx.writer)
    if pid is not None:
        if not stop_irqbalance:
            plan.refusals.append(
                f"irqbalance (pid {pid}) is running and would undo this within seconds; stop it first, "
                "or pass --stop-irqbalance, or set IRQBALANCE_BANNED_CPULIST / --banirq for these IRQs"
            )
        elif not ctx.writer.live:
            plan.refusals.append("--stop-irqbalance works on the live host only")
        else:
            # First change: stopped before the writes, restarted by a rollback.
            plan.changes.insert(0, Change(SERVICE, "irqbalance", "inactive", before="active", why="would undo"))
    rule = "".join(
        f'ACTION=="add", SUBSYSTEM=="net", KERNEL=="{iface}", '
        f"RUN+=\"/bin/sh -c 'echo {change.after.strip()} > /{change.target}'\"\n"
        for change in kernel_changes
    )
    plan.changes.append(
        _file(ctx.writer, UDEV_RULE.format(fix="irq-affinity", iface=iface), HEADER.format(fix="irq-affinity") + rule)
    )
    return plan


def _cpu_mask(cpus: list[int]) -> str:
    """rps_cpus format: comma-separated 32-bit hex groups, most significant first."""
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    groups = []
    while True:
        groups.append(f"{value & 0xFFFFFFFF:08x}")
        value >>= 32
        if not value:
            break
    return ",".join(reversed(groups))


def _power_of_two_at_most(value: int) -> int:
    power = 1
    while power * 2 <= value:
        power *= 2
    return power


def plan_rss(ctx: FixContext, iface: str, queues: int | None = None) -> Plan:
    """More hardware queues (channels) when the driver has them; RPS + RFS for a single-queue NIC.

    Channels: N = --queues, else what the diagnosis proposed, else the NIC's NUMA-local
    CPUs; capped at the driver's maximum (a note says so). Combined channels when the
    driver has them, else rx and tx. RPS: every rx queue's rps_cpus spans the online CPUs,
    rps_flow_cnt = rps_sock_flow_entries / queues rounded down to a power of two (the
    kernel rounds it so; scaling.rst), and the global rps_sock_flow_entries where the
    kernel exposes it (the initial network namespace only).
    """
    writer = ctx.writer
    if queues is not None and queues < 1:
        plan = Plan("rss", f"{iface} channels -> {queues}", [])
        plan.refusals.append(f"--queues {queues}: must be at least 1")
        return plan
    channels_text = writer.read(Change(ETHTOOL, f"{iface}:channels", "{}"))
    channels = json.loads(channels_text or "{}")
    cpus, local = _numa_cpus(ctx, iface)
    suggested = ctx.suggested("rss", iface)
    keys = [k for k in ("combined", "rx", "tx") if int(channels.get(f"max_{k}") or 0) > 1]
    if keys:
        if "combined" in keys:
            keys = ["combined"]
        want = queues or int(suggested.get("combined") or suggested.get("rx") or 0) or local
        settable = {key: min(want, int(channels[f"max_{key}"])) for key in keys}
        plan = Plan("rss", f"{iface} channels -> " + ", ".join(f"{k} {v}" for k, v in settable.items()), [])
        for key, value in settable.items():
            if value < want:
                plan.notes.append(f"{iface} has at most {value} {key} channels; {want} asked")
        plan.changes.append(
            writer.read_before(Change(ETHTOOL, f"{iface}:channels", json.dumps(settable, sort_keys=True)))
        )
        args = " ".join(f"{k} {v}" for k, v in sorted(settable.items()))
        plan.changes.append(
            _file(
                writer,
                UDEV_RULE.format(fix="rss", iface=iface),
                HEADER.format(fix="rss")
                + f'ACTION=="add", SUBSYSTEM=="net", KERNEL=="{iface}", RUN+="/usr/sbin/ethtool -L {iface} {args}"\n',
            )
        )
        return plan
    # Single queue: spread receive processing in software (scaling.rst, RPS + RFS).
    queues_dir = writer.path(f"sys/class/net/{iface}/queues")
    queue_dirs = sorted(q for q in os.listdir(queues_dir) if q.startswith("rx-")) if os.path.isdir(queues_dir) else []
    if not queue_dirs:
        raise FixFailed(f"{iface} has neither settable channels nor rx queues in sysfs")
    mask = _cpu_mask(cpus)
    flow_cnt = _power_of_two_at_most(RPS_SOCK_FLOW_ENTRIES // len(queue_dirs))
    plan = Plan("rss", f"{iface} is single-queue: RPS over CPUs {cpus} (rps_cpus={mask}) with RFS", [])
    udev = []
    for queue in queue_dirs:
        base = f"sys/class/net/{iface}/queues/{queue}"
        plan.changes.append(_kernel(writer, f"{base}/rps_cpus", mask, "RPS"))
        commands = [f"echo {mask} > /{base}/rps_cpus"]
        if os.path.exists(writer.path(f"{base}/rps_flow_cnt")):
            plan.changes.append(_kernel(writer, f"{base}/rps_flow_cnt", flow_cnt, "RFS"))
            commands.append(f"echo {flow_cnt} > /{base}/rps_flow_cnt")
        udev.append(
            f'ACTION=="add", SUBSYSTEM=="net", KERNEL=="{iface}", RUN+="/bin/sh -c \'{"; ".join(commands)}\'"\n'
        )
    if os.path.exists(writer.path(_sysctl_rel("net.core.rps_sock_flow_entries"))):
        plan.changes.append(
            _kernel(writer, _sysctl_rel("net.core.rps_sock_flow_entries"), RPS_SOCK_FLOW_ENTRIES, "RFS")
        )
        plan.changes.append(
            _file(
                writer,
                SYSCTL_D.format(fix="rps"),
                _sysctl_file("rss", {"net.core.rps_sock_flow_entries": RPS_SOCK_FLOW_ENTRIES}),
            )
        )
    else:
        plan.notes.append(
            "net.core.rps_sock_flow_entries is not exposed here (not the initial network "
            "namespace?): RFS flow steering needs it set on the host"
        )
    plan.changes.append(
        _file(writer, UDEV_RULE.format(fix="rps", iface=iface), HEADER.format(fix="rss") + "".join(udev))
    )
    return plan


def plan_ring(ctx: FixContext, iface: str, rx: int | None = None, tx: int | None = None) -> Plan:
    writer = ctx.writer
    rings = json.loads(writer.read(Change(ETHTOOL, f"{iface}:rings", "{}")) or "{}")
    suggested = ctx.suggested("ring", iface)
    want: dict[str, int] = {}
    for key, flag in (("rx", rx), ("tx", tx)):
        maximum = rings.get(f"{key}_max")
        if maximum is None or key not in rings:
            continue
        value = flag if flag is not None else int(suggested.get(key, maximum))
        want[key] = value
    plan = Plan("ring", f"{iface} rings -> " + ", ".join(f"{k} {v}" for k, v in want.items()), [])
    if not want:
        plan.refusals.append(f"{iface} reports no settable rings")
        return plan
    for key, value in want.items():
        if value < 1:
            plan.refusals.append(f"{key} {value}: a ring needs at least one descriptor")
        if value > rings[f"{key}_max"]:
            plan.refusals.append(f"{key} {value} exceeds the driver's maximum {rings[f'{key}_max']}")
        if value < rings[key]:
            plan.refusals.append(f"{key} {value} is below the current {rings[key]}: netdoctor only raises rings")
    ring_change = writer.read_before(Change(ETHTOOL, f"{iface}:rings", json.dumps(want, sort_keys=True)))
    rule_rel = UDEV_RULE.format(fix="ring", iface=iface)
    if writer.is_noop(ring_change) and not plan.refusals and not os.path.exists(writer.path(rule_rel)):
        plan.summary = f"{iface} rings already at " + ", ".join(f"{k} {v}" for k, v in want.items())
        return plan  # nothing to set, nothing of ours to keep in step: no change at all
    plan.changes.append(ring_change)
    args = " ".join(f"{k} {v}" for k, v in sorted(want.items()))
    plan.changes.append(
        _file(
            writer,
            rule_rel,
            HEADER.format(fix="ring")
            + f'ACTION=="add", SUBSYSTEM=="net", KERNEL=="{iface}", RUN+="/usr/sbin/ethtool -G {iface} {args}"\n',
        )
    )
    return plan
