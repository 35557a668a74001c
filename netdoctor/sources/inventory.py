"""Facts node_exporter does not export, from the live host and captures only.

Checks that need these say so; on Prometheus history `View.inventory` is None and
those checks fall back to the nearest node_exporter series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netdoctor.sources.parsers.sockets import SocketTable

# Linux default when the sysctl file cannot be read (include/net/ip.h inet_get_local_port_range).
DEFAULT_PORT_RANGE = (32768, 60999)


@dataclass(frozen=True)
class IrqInfo:
    """One IRQ line from /proc/interrupts, with where it may run (smp_affinity_list)."""

    irq: int
    devices: str  # the action column, e.g. "eth0-TxRx-0"
    interface: str | None  # the NIC it belongs to, when the name says so
    affinity: tuple[int, ...] | None  # CPUs from /proc/irq/N/smp_affinity_list; None if unreadable
    counts_per_cpu: tuple[int, ...]


@dataclass
class NicInfo:
    """A physical NIC's layout: NUMA node, queues and their RPS masks, channels and rings."""

    name: str
    numa_node: int | None = None
    speed_bytes: float | None = None  # bytes per second; None when unknown (-1 in sysfs)
    rps_cpus: dict[str, tuple[int, ...]] = field(default_factory=dict)  # "rx-0" -> CPUs
    rps_flow_cnt: dict[str, int] = field(default_factory=dict)
    channels: dict[str, int] | None = None  # ethtool -l: rx, tx, combined, max_rx, max_tx, max_combined...
    rings: dict[str, int] | None = None  # ethtool -g: rx, rx_max, tx, tx_max


@dataclass
class Inventory:
    sockets: SocketTable | None = None
    socket_owners: dict[int, tuple[int, str]] = field(default_factory=dict)  # inode -> (pid, comm)
    # inode -> accept-queue limit of each listener (not in /proc/net/tcp, whose tx_queue is 0 for listeners)
    listen_backlogs: dict[int, int] = field(default_factory=dict)
    irqs: list[IrqInfo] = field(default_factory=list)
    nics: dict[str, NicInfo] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)  # "net.ipv4.tcp_tw_reuse" -> "2"
    cpus: list[int] = field(default_factory=list)  # online CPU ids
    missing: dict[str, str] = field(default_factory=dict)  # "sockets" / sysctl name -> why unreadable

    def sysctl_int(self, name: str) -> int | None:
        text = self.sysctls.get(name)
        try:
            return int(text.split()[0]) if text and text.split() else None
        except ValueError:
            return None

    def port_range(self) -> tuple[int, int] | None:
        from netdoctor.sources.parsers.sysctl import parse_port_range

        text = self.sysctls.get("net.ipv4.ip_local_port_range")
        return parse_port_range(text) if text is not None else None

    def reserved_ports(self) -> frozenset[int]:
        from netdoctor.sources.parsers.sysctl import parse_port_list

        return frozenset(parse_port_list(self.sysctls.get("net.ipv4.ip_local_reserved_ports", "")))
