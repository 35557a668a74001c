"""Turn raw file text into node_exporter-named series and inventories. Pure: no I/O.

The live source and captures both go through `build_view`, which is why a capture
replays to exactly the View the live source built from the same two samples.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from netdoctor.errors import ParseError
from netdoctor.sources.inventory import Inventory, IrqInfo, NicInfo
from netdoctor.sources.parsers import Metric
from netdoctor.sources.reader import (
    BACKLOGS_FILE,
    ETHTOOL_DIR,
    NIC_DEVICE_DIR,
    OWNERS_FILE,
    PROC_FILES,
    SOCKET_FILES,
    SYSCTLS,
    RawSample,
    sysctl_path,
)
from netdoctor.view import Sample, SampleView

NETDEV_PREFIXES = ("node_network_receive_", "node_network_transmit_")
NETCLASS_NAMES = (
    "node_network_speed_bytes",
    "node_network_up",
    "node_network_carrier",
    "node_network_mtu_bytes",
    "node_network_info",
)
SYSFS_STAT_NAMES = (
    "node_network_receive_crc_errors_total",
    "node_network_receive_missed_errors_total",
    "node_network_receive_fifo_errors_total",
    "node_network_receive_frame_errors_total",
    "node_network_receive_over_errors_total",
    "node_network_receive_length_errors_total",
    "node_network_transmit_fifo_errors_total",
    "node_network_transmit_carrier_errors_total",
)

# Which metric families each file feeds: a file that cannot be read makes these
# "could not judge: cannot read /proc/...: why" instead of silently absent.
FAMILIES: dict[str, tuple[str, ...]] = {
    "proc/net/dev": NETDEV_PREFIXES,
    "proc/net/snmp": tuple(f"node_netstat_{p}_" for p in ("Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite")),
    "proc/net/netstat": ("node_netstat_TcpExt_", "node_netstat_IpExt_", "node_netstat_MPTcpExt_"),
    "proc/net/snmp6": tuple(f"node_netstat_{p}_" for p in ("Ip6", "Icmp6", "Udp6", "UdpLite6")),
    "proc/net/sockstat": (
        "node_sockstat_sockets_",
        "node_sockstat_TCP_",
        "node_sockstat_UDP_",
        "node_sockstat_UDPLITE_",
        "node_sockstat_RAW_",
        "node_sockstat_FRAG_",
    ),
    "proc/net/sockstat6": ("node_sockstat_TCP6_", "node_sockstat_UDP6_", "node_sockstat_RAW6_"),
    "proc/net/softnet_stat": ("node_softnet_",),
    "proc/net/stat/nf_conntrack": ("node_nf_conntrack_stat_", "netdoctor_nf_conntrack_stat_"),
    "proc/stat": (
        "node_cpu_",
        "node_context_switches_total",
        "node_intr_total",
        "node_forks_total",
        "node_boot_time_seconds",
        "node_procs_",
    ),
    "proc/softirqs": ("node_softirqs_",),
    "proc/interrupts": ("node_interrupts_",),
    "proc/meminfo": ("node_memory_",),
    sysctl_path("net.netfilter.nf_conntrack_count"): ("node_nf_conntrack_entries",),
    sysctl_path("net.netfilter.nf_conntrack_max"): ("node_nf_conntrack_entries_limit",),
    "sys/class/net": NETCLASS_NAMES + SYSFS_STAT_NAMES,
}


def _file_parsers() -> dict[str, Callable[[str, dict[str, str]], list[Metric]]]:
    from netdoctor.sources.parsers import (
        conntrack,
        cpustat,
        interrupts,
        meminfo,
        netdev,
        snmp,
        sockstat,
        softirqs,
        softnet,
    )

    return {
        "proc/net/dev": lambda text, _: netdev.netdev_metrics(netdev.parse_netdev(text)),
        "proc/net/snmp": lambda text, _: snmp.netstat_metrics(snmp.parse_snmp(text)),
        "proc/net/netstat": lambda text, _: snmp.netstat_metrics(snmp.parse_snmp(text)),
        "proc/net/snmp6": lambda text, _: snmp.netstat_metrics(snmp.parse_snmp6(text)),
        "proc/net/sockstat": lambda text, _: sockstat.sockstat_metrics(
            sockstat.parse_sockstat(text), ipv6=False
        ),
        "proc/net/sockstat6": lambda text, _: sockstat.sockstat_metrics(
            sockstat.parse_sockstat(text), ipv6=True
        ),
        # Rows are online CPUs: without the index column, /proc/stat's CPU list names them.
        "proc/net/softnet_stat": lambda text, files: softnet.softnet_metrics(
            softnet.parse_softnet(text, online_cpus=_online_cpus(files))
        ),
        "proc/net/stat/nf_conntrack": lambda text, _: conntrack.conntrack_stat_metrics(
            conntrack.parse_conntrack_stat(text)
        ),
        "proc/stat": lambda text, _: cpustat.stat_metrics(cpustat.parse_stat(text)),
        "proc/softirqs": lambda text, _: softirqs.softirqs_metrics(softirqs.parse_softirqs(text)),
        "proc/interrupts": lambda text, _: interrupts.interrupts_metrics(interrupts.parse_interrupts(text)),
        "proc/meminfo": lambda text, _: meminfo.meminfo_metrics(meminfo.parse_meminfo(text)),
    }


def _online_cpus(files: dict[str, str]) -> list[int] | None:
    from netdoctor.sources.parsers.cpustat import online_cpus, parse_stat

    text = files.get("proc/stat")
    try:
        return online_cpus(parse_stat(text)) if text is not None else None
    except ParseError:
        return None


def _cannot(rel: str, why: str) -> str:
    return f"cannot read /{rel}: {why}"


class _Builder:
    """Builds one Sample (and, for the last sample, the Inventory) from a RawSample."""

    def __init__(self, raw: RawSample) -> None:
        self.raw = raw
        self.sample = Sample(taken_at=raw.taken_at)
        self.problems: list[str] = []

    def fail(self, rel: str, why: str, *, parse: bool = False) -> None:
        message = f"cannot parse /{rel}: {why}" if parse else _cannot(rel, why)
        self.problems.append(message)
        for prefix in FAMILIES.get(rel, ()):
            self.sample.missing[prefix] = message

    def build_series(self) -> None:
        from netdoctor.sources.parsers.softnet import SOFTNET_WRAP32

        self.sample.wrap32.update(SOFTNET_WRAP32)
        for rel, produce in _file_parsers().items():
            text = self.raw.files.get(rel)
            if text is None:
                self.fail(rel, self.raw.errors.get(rel, "not read"))
                continue
            try:
                self.sample.extend(produce(text, self.raw.files))
            except ParseError as exc:
                self.fail(rel, str(exc), parse=True)
        for prefix in ("node_netstat_TcpExt_", "node_netstat_Tcp_", "node_netstat_Udp_"):
            # A file that parsed but lacks a field: that kernel does not count it.
            self.sample.missing.setdefault(prefix, f"{prefix}* field not counted by this kernel")
        self.build_conntrack_gauges()
        self.build_netclass()

    def build_conntrack_gauges(self) -> None:
        from netdoctor.sources.parsers.conntrack import conntrack_metrics
        from netdoctor.sources.parsers.sysctl import parse_int

        count_rel = sysctl_path("net.netfilter.nf_conntrack_count")
        max_rel = sysctl_path("net.netfilter.nf_conntrack_max")
        count_text, max_text = self.raw.files.get(count_rel), self.raw.files.get(max_rel)
        if count_text is None or max_text is None:
            rel = count_rel if count_text is None else max_rel
            self.fail(count_rel, self.raw.errors.get(rel, "not read"))
            self.fail(max_rel, self.raw.errors.get(rel, "not read"))
            return
        try:
            self.sample.extend(conntrack_metrics(parse_int(count_text), parse_int(max_text)))
        except ParseError as exc:
            self.fail(count_rel, str(exc), parse=True)
            self.fail(max_rel, str(exc), parse=True)

    def physical_interfaces(self) -> list[str]:
        names = set()
        for rel in self.raw.files:
            if rel.startswith("sys/class/net/"):
                names.add(rel.split("/")[3])
        return sorted(names)

    def build_netclass(self) -> None:
        from netdoctor.sources.parsers.netclass import netclass_metrics, netstats_metrics

        if "sys/class/net" in self.raw.errors:
            self.fail("sys/class/net", self.raw.errors["sys/class/net"])
            return
        ifaces = self.physical_interfaces()
        if not ifaces:
            why = "no physical NIC under /sys/class/net (only virtual interfaces here)"
            for name in NETCLASS_NAMES + SYSFS_STAT_NAMES:
                self.sample.missing[name] = why
            return
        for iface in ifaces:
            base = f"sys/class/net/{iface}/"
            attrs = {
                rel[len(base) :]: text
                for rel, text in self.raw.files.items()
                if rel.startswith(base) and "/" not in rel[len(base) :]
            }
            stats = {
                rel[len(base) + len("statistics/") :]: text
                for rel, text in self.raw.files.items()
                if rel.startswith(base + "statistics/")
            }
            try:
                self.sample.extend(netclass_metrics(iface, attrs))
                self.sample.extend(netstats_metrics(iface, stats))
            except ParseError as exc:
                self.problems.append(f"cannot parse /{base}: {exc}")
        if not self.sample.series.get("node_network_speed_bytes"):
            speeds = ", ".join(
                f"{iface}: {self.raw.files.get(f'sys/class/net/{iface}/speed', 'unreadable').strip() or 'empty'}"
                for iface in ifaces
            )
            self.sample.missing["node_network_speed_bytes"] = (
                f"no physical NIC reports a link speed ({speeds}; -1 means unknown, usual for virtual machines)"
            )

    def build_inventory(self) -> Inventory:
        inventory = Inventory()
        for name in SYSCTLS:
            rel = sysctl_path(name)
            if rel in self.raw.files:
                inventory.sysctls[name] = self.raw.files[rel].strip()
            else:
                inventory.missing[name] = _cannot(rel, self.raw.errors.get(rel, "not read"))
        inventory.cpus = self._online_cpus()
        inventory.nics = {iface: self._nic(iface) for iface in self.physical_interfaces()}
        # Only physical NICs have IRQs: matching thousands of veth names against each IRQ would be quadratic.
        inventory.irqs = self._irqs(set(inventory.nics), self._device_aliases())
        self._sockets(inventory)
        return inventory

    def _online_cpus(self) -> list[int]:
        return _online_cpus(self.raw.files) or []

    def _nic(self, iface: str) -> NicInfo:
        from netdoctor.sources.parsers.sysctl import parse_cpu_mask, parse_int

        base = f"sys/class/net/{iface}"
        nic = NicInfo(name=iface)
        files = self.raw.files
        try:
            if f"{base}/device/numa_node" in files:
                numa = parse_int(files[f"{base}/device/numa_node"])
                nic.numa_node = numa if numa >= 0 else None
            if f"{base}/speed" in files:
                speed = parse_int(files[f"{base}/speed"])
                nic.speed_bytes = speed * 125000.0 if speed > 0 else None
            prefix = f"{base}/queues/"
            for rel, text in files.items():
                if not rel.startswith(prefix):
                    continue
                queue, _, attr = rel[len(prefix) :].partition("/")
                if attr == "rps_cpus":
                    nic.rps_cpus[queue] = parse_cpu_mask(text)
                elif attr == "rps_flow_cnt":
                    nic.rps_flow_cnt[queue] = parse_int(text)
        except ParseError as exc:
            self.problems.append(f"cannot parse /{base}: {exc}")
        ethtool_text = files.get(f"{ETHTOOL_DIR}/{iface}.json")
        if ethtool_text:
            try:
                answer: dict[str, Any] = json.loads(ethtool_text)
                nic.channels = answer.get("channels")
                nic.rings = answer.get("rings")
            except ValueError as exc:
                self.problems.append(f"cannot parse ethtool answer for {iface}: {exc}")
        return nic

    def _device_aliases(self) -> dict[str, str]:
        """Bus device name -> NIC, from the reader's NIC device records."""
        aliases: dict[str, str] = {}
        for iface in self.physical_interfaces():
            text = self.raw.files.get(f"{NIC_DEVICE_DIR}/{iface}.json")
            if not text:
                continue
            try:
                info = json.loads(text)
            except ValueError:
                continue
            for key in ("device", "bus"):
                if isinstance(info.get(key), str) and info[key]:
                    aliases[info[key]] = iface
        return aliases

    def _irqs(self, interfaces: set[str], aliases: dict[str, str]) -> list[IrqInfo]:
        from netdoctor.sources.parsers.interrupts import irq_interface, parse_interrupts
        from netdoctor.sources.parsers.sysctl import parse_cpu_list

        text = self.raw.files.get("proc/interrupts")
        if text is None:
            return []
        try:
            rows = parse_interrupts(text)
        except ParseError:
            return []  # already reported by build_series
        irqs = []
        for row in rows:
            if not row.irq.isdigit():
                continue
            affinity_text = self.raw.files.get(f"proc/irq/{row.irq}/smp_affinity_list")
            try:
                affinity = parse_cpu_list(affinity_text) if affinity_text is not None else None
            except ParseError:
                affinity = None
            counts = tuple(row.counts[cpu] for cpu in sorted(row.counts))
            irqs.append(
                IrqInfo(
                    irq=int(row.irq),
                    devices=row.devices,
                    interface=irq_interface(row.devices, interfaces, aliases),
                    affinity=affinity,
                    counts_per_cpu=counts,
                )
            )
        return irqs

    def _sockets(self, inventory: Inventory) -> None:
        from netdoctor.sources.parsers.sockets import SocketTable, parse_socket_table

        tables = []
        unreadable = []
        for rel, proto, family in SOCKET_FILES:
            text = self.raw.files.get(rel)
            if text is None:
                # IPv6 off is normal; the v4 tables missing means no inventory.
                if family == 4:
                    unreadable.append(_cannot(rel, self.raw.errors.get(rel, "not read")))
                continue
            try:
                cached = self.raw.parsed.get(rel)
                tables.append(cached if cached is not None else parse_socket_table(text, proto, family))
            except ParseError as exc:
                unreadable.append(f"cannot parse /{rel}: {exc}")
        if unreadable:
            self.problems.extend(unreadable)
            inventory.missing["sockets"] = "; ".join(unreadable)
        if tables and not unreadable:
            inventory.sockets = SocketTable.merge(tables)
        owners_text = self.raw.files.get(OWNERS_FILE)
        if owners_text:
            try:
                loaded = json.loads(owners_text)
                inventory.socket_owners = {int(k): (int(v[0]), str(v[1])) for k, v in loaded.items()}
            except (ValueError, TypeError, IndexError, AttributeError) as exc:
                self.problems.append(f"cannot parse socket owners: {exc}")
        backlogs_text = self.raw.files.get(BACKLOGS_FILE)
        if backlogs_text:
            try:
                loaded = json.loads(backlogs_text)
                inventory.listen_backlogs = {int(k): int(v) for k, v in loaded.items()}
            except (ValueError, TypeError, AttributeError) as exc:
                self.problems.append(f"cannot parse listen backlogs: {exc}")
        elif BACKLOGS_FILE in self.raw.errors:
            inventory.missing["listen_backlogs"] = self.raw.errors[BACKLOGS_FILE]


def build_view(
    first: RawSample,
    second: RawSample,
    interval_s: float,
    *,
    source: str,
    meta: dict[str, Any] | None = None,
) -> SampleView:
    """Two raw samples -> the View every check reads."""
    builder_first = _Builder(first)
    builder_first.build_series()
    builder_second = _Builder(second)
    builder_second.build_series()
    inventory = builder_second.build_inventory()
    problems = list(dict.fromkeys(builder_second.problems))
    return SampleView(
        builder_first.sample,
        builder_second.sample,
        interval_s,
        source=source,
        inventory=inventory,
        problems=problems,
        meta=meta,
    )


__all__ = ["build_view", "FAMILIES", "PROC_FILES"]
