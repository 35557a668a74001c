"""Parse /proc/interrupts and tell which NIC an IRQ line belongs to.

Why: a multi-queue NIC has one IRQ per queue, and each IRQ's counts per CPU show
where its receive work runs. All queues landing on one CPU is the root cause behind
softirq saturation and softnet drops on that CPU. `grep eth0 /proc/interrupts` is
not enough: it must be per IRQ, per queue, per CPU.

Shape (kernel/irq/proc.c show_interrupts): a header "CPU0 CPU1 ..." naming the
*online* CPUs (an offline CPU's column is simply absent), then rows
"NAME: count per CPU, then a description". For numbered IRQs the description is
the chip name, then "<hwirq>-<flow>" on kernels with IRQ domains (e.g.
"IR-PCI-MSI 524288-edge") or "-<flow>" glued to the chip on older ones
("IR-PCI-MSI-edge"), then the action names joined by ", " ("eth0-TxRx-0"). Named
rows (NMI, LOC, ...) carry a text description; ERR and MIS have a single count and
no description; names may contain spaces only in the description.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from netdoctor.errors import ParseError
from netdoctor.sources.parsers import Metric
from netdoctor.sources.parsers.softirqs import parse_cpu_header

_UINT = re.compile(r"[0-9]+")
_IRQ_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
# The "<hwirq>-<flow handler>" token after the chip name: "524288-edge", "5-fasteoi".
_HWIRQ_FLOW = re.compile(r"[0-9]+-[A-Za-z_]+")


@dataclass(frozen=True)
class InterruptRow:
    """One row. `info` and `devices` are split exactly as node_exporter labels them.

    Numbered IRQ: info = first description token (chip), devices = the rest
    ("0-edge virtio0-config", or "eth0-TxRx-0" on old kernels). Named row: info = the
    whole description ("Non-maskable interrupts"), devices = "".
    """

    irq: str  # "24", "NMI", "ERR"
    counts: dict[int, int]  # CPU id (from the header) -> count; {} for ERR/MIS
    info: str
    devices: str
    summary_total: int | None = None  # ERR/MIS: their one system-wide count (not per CPU)

    @property
    def actions(self) -> list[str]:
        """The action (handler) names: "16-fasteoi ehci_hcd:usb1, eth0" -> ["ehci_hcd:usb1", "eth0"]."""
        return _actions(self.devices)


def parse_interrupts(text: str) -> list[InterruptRow]:
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ParseError("line 1: interrupts is empty")
    cpus = parse_cpu_header(lines[0][1], lines[0][0])
    rows: list[InterruptRow] = []
    seen: set[str] = set()
    for number, line in lines[1:]:
        name, colon, rest = line.partition(":")
        name = name.strip()
        if not colon or not _IRQ_NAME.fullmatch(name):
            raise ParseError(f"line {number}: expected 'IRQ: counts', got {line.strip()!r}")
        if name in seen:
            raise ParseError(f"line {number}: IRQ {name} appears twice")
        seen.add(name)
        fields = rest.split()
        count_fields: list[str] = []
        for field in fields[: len(cpus)]:
            if not _UINT.fullmatch(field):
                break
            count_fields.append(field)
        description = fields[len(count_fields) :]
        if not count_fields:
            raise ParseError(f"line {number}: IRQ {name} has no count")
        if len(count_fields) < len(cpus) and (description or name.isdigit()):
            # Only the summary rows (ERR, MIS) have fewer counts, and never a description.
            raise ParseError(f"line {number}: IRQ {name} has {len(count_fields)} counts for {len(cpus)} CPUs")
        if len(count_fields) < len(cpus) or (not description and not name.isdigit()):
            total = sum(int(value) for value in count_fields)
            rows.append(InterruptRow(irq=name, counts={}, info="", devices="", summary_total=total))
            continue
        counts = {cpu: int(value) for cpu, value in zip(cpus, count_fields, strict=True)}
        if name.isdigit():
            info = description[0] if description else ""
            devices = " ".join(description[1:])
        else:
            info, devices = " ".join(description), ""
        rows.append(InterruptRow(irq=name, counts=counts, info=info, devices=devices))
    return rows


def interrupts_metrics(rows: list[InterruptRow]) -> list[Metric]:
    """`node_interrupts_total{cpu,devices,info,type}` as node_exporter 1.5.0 labels them.

    Like node_exporter, rows with fewer counts than CPUs (ERR, MIS) are skipped: they
    are system-wide totals, not per-CPU. One difference: node_exporter labels `cpu`
    by column position, netdoctor by the CPU id from the header. They agree whenever
    every CPU is online; with CPU 2 offline node_exporter calls CPU 3's column "2".
    """
    metrics: list[Metric] = []
    for row in rows:
        if row.summary_total is not None or not row.info:
            continue  # ERR/MIS: one system-wide total, no description (node_exporter skips these too)
        for cpu, count in row.counts.items():
            labels = {"cpu": str(cpu), "type": row.irq, "info": row.info, "devices": row.devices}
            metrics.append(("node_interrupts_total", labels, float(count)))
    return metrics


def _actions(devices: str) -> list[str]:
    tokens = devices.split()
    if tokens and _HWIRQ_FLOW.fullmatch(tokens[0]):
        tokens = tokens[1:]
    joined = " ".join(tokens)
    return [name.strip() for name in joined.split(",") if name.strip()]


_SEPARATORS = ("-", "_", ":", "@", ".")


def irq_interface(devices: str, interfaces: set[str], aliases: Mapping[str, str] | None = None) -> str | None:
    """The network interface an IRQ serves, from its action name(s); None when unknown.

    `devices` is the action part of a /proc/interrupts row (node_exporter's `devices`
    label; a leading "<hwirq>-<flow>" token is skipped). Matches, longest interface
    name first so "eth1" never claims "eth10-TxRx-0":
    - the whole action is an interface name ("eth0" on single-queue drivers);
    - the action starts with the name and a separator ("eth0-TxRx-0", "eth0-rx-1",
      "ens5-Tx-Rx-7", "enp59s0f0np0-0");
    - the name sits between dashes ("i40e-eth0-TxRx-0").
    Actions that name a bus device instead ("virtio0-input.0", "mlx5_comp3@pci:0000:3b:00.0")
    map only through `aliases`, e.g. {"virtio0": "eth0", "0000:3b:00.0": "ens1f0"} built
    from the /sys/class/net/IFACE/device links.
    """
    by_length = sorted(interfaces, key=len, reverse=True)
    for action in _actions(devices):
        for iface in by_length:
            if not iface:
                continue
            if action == iface or any(action.startswith(iface + sep) for sep in _SEPARATORS):
                return iface
            if f"-{iface}-" in action:
                return iface
        for device, iface in sorted((aliases or {}).items(), key=lambda item: len(item[0]), reverse=True):
            if not device:
                continue
            if action == device or any(action.startswith(device + sep) for sep in _SEPARATORS):
                return iface
            if action.endswith(("@pci:" + device, "@" + device)):
                return iface
    return None
