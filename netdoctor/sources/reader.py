"""Read every kernel file netdoctor needs under a root, as raw text, remembering why each failed.

This is the only place the live source touches /proc and /sys. A `RawSample` is
exactly what a capture stores, so a capture replays the same bytes through the same
parsers and gives the same View.
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netdoctor.errors import ParseError

if TYPE_CHECKING:
    from netdoctor.sources.parsers.sockets import SocketTable, SocketTableBuilder

# Where the capture keeps what is not a kernel file (errors met, ethtool answers, socket owners).
META_DIR = ".netdoctor"
ERRORS_FILE = f"{META_DIR}/errors.json"
ETHTOOL_DIR = f"{META_DIR}/ethtool"
OWNERS_FILE = f"{META_DIR}/socket_owners.json"
BACKLOGS_FILE = f"{META_DIR}/listen_backlogs.json"
NIC_DEVICE_DIR = f"{META_DIR}/nic"  # <iface>.json: the bus device behind a NIC, to name its IRQs

PROC_FILES = (
    "proc/net/dev",
    "proc/net/snmp",
    "proc/net/snmp6",
    "proc/net/netstat",
    "proc/net/sockstat",
    "proc/net/sockstat6",
    "proc/net/softnet_stat",
    "proc/net/stat/nf_conntrack",
    "proc/stat",
    "proc/softirqs",
    "proc/interrupts",
    "proc/meminfo",
)

SYSCTLS = (
    "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_buckets",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_max_orphans",
    "net.core.somaxconn",
    "net.core.netdev_max_backlog",
    "net.core.netdev_budget",
    "net.core.netdev_budget_usecs",
    "net.core.rps_sock_flow_entries",
    "net.core.rmem_max",
    "net.core.rmem_default",
)

SOCKET_FILES = (
    ("proc/net/tcp", "tcp", 4),
    ("proc/net/tcp6", "tcp", 6),
    ("proc/net/udp", "udp", 4),
    ("proc/net/udp6", "udp", 6),
)

NETCLASS_ATTRS = (
    "speed",
    "operstate",
    "carrier",
    "carrier_changes",
    "carrier_up_count",
    "carrier_down_count",
    "mtu",
    "duplex",
    "address",
    "broadcast",
    "ifalias",
    "dormant",
    "flags",
    "ifindex",
    "iflink",
    "type",
    "dev_id",
    "addr_assign_type",
    "name_assign_type",
    "link_mode",
    "netdev_group",
    "tx_queue_len",
)

# Why a file may be missing, said in the user's terms.
ABSENT_HINTS = {
    "proc/net/stat/nf_conntrack": "nf_conntrack is not loaded, or the kernel lacks CONFIG_NF_CONNTRACK_PROCFS",
    "proc/sys/net/netfilter/nf_conntrack_count": "nf_conntrack is not loaded",
    "proc/sys/net/netfilter/nf_conntrack_max": "nf_conntrack is not loaded",
    "proc/net/snmp6": "IPv6 is disabled on this host",
    "proc/net/sockstat6": "IPv6 is disabled on this host",
    "proc/net/tcp6": "IPv6 is disabled on this host",
    "proc/net/udp6": "IPv6 is disabled on this host",
    "sys/class/net": "/sys is not mounted here (a container without sysfs?)",
}

READ_CHUNK = 1 << 20


def sysctl_path(name: str) -> str:
    return "proc/sys/" + name.replace(".", "/")


@dataclass
class RawSample:
    """Text of every file read under one root at one instant, and why the others failed."""

    files: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    taken_at: float = field(default=0.0, compare=False)  # time.monotonic() of the read
    wall_time: float = field(default=0.0, compare=False)
    # Socket tables already parsed while reading (owner lookup), so the collector does not parse twice.
    parsed: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def describe_error(rel: str, exc: BaseException) -> str:
    """One line: why `rel` could not be read."""
    if isinstance(exc, FileNotFoundError):
        return ABSENT_HINTS.get(rel, "no such file")
    if isinstance(exc, PermissionError):
        return "permission denied (netdoctor needs root to read it)"
    if isinstance(exc, UnicodeDecodeError):
        return "not text (binary or corrupt content)"
    if isinstance(exc, OSError):
        if exc.errno == errno.EINVAL:
            return "invalid argument (the kernel has no value for it now)"
        return exc.strerror or str(exc)
    return str(exc)


def read_bytes(path: str) -> bytes:
    """Whole file in big reads: seq_file in /proc regenerates per read(), so few large reads are fastest."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class _SocketFileSink:
    """Receives one socket file chunk by chunk: keeps its exact text (captures store it) and parses it.

    A parse error stops the parsing, not the reading: the text is still kept, and the collector reports it.
    """

    def __init__(self, builder: SocketTableBuilder) -> None:
        self.builder = builder
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.parts: list[str] = []
        self.decode_error: UnicodeDecodeError | None = None
        self.parse_failed = False

    def feed(self, chunk: bytes) -> None:
        if self.decode_error is None:
            try:
                self.parts.append(self.decoder.decode(chunk))
            except UnicodeDecodeError as exc:
                self.decode_error = exc
                self.parts = []
        if not self.parse_failed:
            try:
                self.builder.feed(chunk)
            except ParseError:
                self.parse_failed = True

    def text(self) -> str:
        """The whole file as text (once); raises UnicodeDecodeError when it is not UTF-8."""
        if self.decode_error is None:
            try:
                self.parts.append(self.decoder.decode(b"", final=True))
            except UnicodeDecodeError as exc:
                self.decode_error = exc
        if self.decode_error is not None:
            raise self.decode_error
        # One join at the end: ~10 ms at 20 MB (mostly first-touch page faults). Growing one string as the
        # chunks arrive would avoid it only through CPython's in-place `+=` specialisation, and degrade to
        # quadratic copying where that does not kick in, so it is not done.
        text = "".join(self.parts)
        self.parts = []
        return text

    def table(self) -> SocketTable | None:
        """The parsed table, or None when the text is not a socket table."""
        if self.parse_failed:
            return None
        try:
            return self.builder.finish()
        except ParseError:
            return None


class Reader:
    """Reads files under `root` into a RawSample, honouring a capture's recorded errors."""

    def __init__(self, root: str = "/", *, live_extras: bool | None = None) -> None:
        self.root = os.path.abspath(root)
        # ethtool and /proc/PID/fd lookups only make sense on the running kernel.
        self.live_extras = (self.root == "/") if live_extras is None else live_extras
        self.recorded_errors: dict[str, str] = {}
        errors_path = os.path.join(self.root, ERRORS_FILE)
        if os.path.exists(errors_path):
            try:
                with open(errors_path, encoding="utf-8") as handle:
                    loaded = json.load(handle)
                if isinstance(loaded, dict):
                    self.recorded_errors = {str(k): str(v) for k, v in loaded.items()}
            except (OSError, ValueError):
                self.recorded_errors = {}

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def read(self, sample: RawSample, rel: str) -> str | None:
        if rel in self.recorded_errors:
            # Replaying a capture: the original failure is the fact to report.
            sample.errors[rel] = self.recorded_errors[rel]
            if not os.path.exists(self.path(rel)):
                return None
        try:
            text = read_bytes(self.path(rel)).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            sample.errors[rel] = describe_error(rel, exc)
            return None
        sample.files[rel] = text
        return text

    def listdir(self, sample: RawSample, rel: str) -> list[str]:
        if rel in self.recorded_errors:
            sample.errors[rel] = self.recorded_errors[rel]
            return []
        try:
            # Dot names are never kernel entries (a capture's own markers are).
            return sorted(name for name in os.listdir(self.path(rel)) if not name.startswith("."))
        except OSError as exc:
            sample.errors[rel] = describe_error(rel, exc)
            return []

    def read_many(self, sample: RawSample, rels: Iterable[str]) -> None:
        for rel in rels:
            self.read(sample, rel)

    def physical_interfaces(self, sample: RawSample) -> list[str]:
        """Interfaces backed by a device (a `device` link in sysfs): the only ones whose sysfs we read.

        Virtual interfaces (veth, bridges...) live under /sys/devices/virtual/net: one
        listing rules thousands of them out without a stat each.
        """
        names = self.listdir(sample, "sys/class/net")
        try:
            virtual = set(os.listdir(self.path("sys/devices/virtual/net")))
        except OSError:
            virtual = set()
        return [
            name
            for name in names
            if name not in virtual and os.path.isdir(self.path(f"sys/class/net/{name}/device"))
        ]

    def sample(self, *, sockets: bool) -> RawSample:
        sample = RawSample(taken_at=time.monotonic(), wall_time=time.time())
        self.read_many(sample, PROC_FILES)
        self.read_many(sample, (sysctl_path(name) for name in SYSCTLS))
        for irq in self.listdir(sample, "proc/irq"):
            if irq.isdigit():
                self.read(sample, f"proc/irq/{irq}/smp_affinity_list")
        for iface in self.physical_interfaces(sample):
            self.read_interface(sample, iface)
        if sockets:
            self.read_socket_inventory(sample)
        return sample

    def read_socket_inventory(self, sample: RawSample) -> None:
        """Everything per-socket: the four socket tables (text and parsed), owners, listen backlogs."""
        self.read_sockets(sample)
        self.read_owners(sample)
        self.read_listen_backlogs(sample)

    def read_listen_backlogs(self, sample: RawSample) -> None:
        """Each listener's accept-queue limit (sk_max_ack_backlog), keyed by inode.

        /proc/net/tcp prints 0 as a listener's tx_queue; the limit is only in
        sock_diag netlink (idiag_wqueue). A kernel-side LISTEN filter keeps this to
        the few listening sockets, so pyroute2 is cheap here.
        """
        if not self.live_extras:
            if os.path.exists(self.path(BACKLOGS_FILE)) or BACKLOGS_FILE in self.recorded_errors:
                self.read(sample, BACKLOGS_FILE)
            return
        from netdoctor.sources.sockdiag import listen_backlogs

        backlogs, error = listen_backlogs()
        if backlogs is not None:
            sample.files[BACKLOGS_FILE] = json.dumps(
                {str(inode): limit for inode, limit in sorted(backlogs.items())}, sort_keys=True
            )
        if error:
            sample.errors[BACKLOGS_FILE] = error

    def read_interface(self, sample: RawSample, iface: str) -> None:
        base = f"sys/class/net/{iface}"
        for attr in NETCLASS_ATTRS:
            rel = f"{base}/{attr}"
            if os.path.exists(self.path(rel)) or rel in self.recorded_errors:
                self.read(sample, rel)
        for stat in self.listdir(sample, f"{base}/statistics"):
            self.read(sample, f"{base}/statistics/{stat}")
        if os.path.exists(self.path(f"{base}/device/numa_node")):
            self.read(sample, f"{base}/device/numa_node")
        for queue in self.listdir(sample, f"{base}/queues"):
            if queue.startswith("rx-"):
                for attr in ("rps_cpus", "rps_flow_cnt"):
                    rel = f"{base}/queues/{queue}/{attr}"
                    if os.path.exists(self.path(rel)) or rel in self.recorded_errors:
                        self.read(sample, rel)
        self.read_ethtool(sample, iface)
        self.read_nic_device(sample, iface)

    def read_nic_device(self, sample: RawSample, iface: str) -> None:
        """Which bus device a NIC is ("virtio2", "0000:3b:00.0"): IRQ names use it, not the NIC's name."""
        rel = f"{NIC_DEVICE_DIR}/{iface}.json"
        if os.path.exists(self.path(rel)) or rel in self.recorded_errors:
            self.read(sample, rel)
            return
        device_link = self.path(f"sys/class/net/{iface}/device")
        if not os.path.islink(device_link):
            return
        info: dict[str, str] = {}
        try:
            target = os.path.realpath(device_link)
            info["device"] = os.path.basename(target)
            parent = os.path.basename(os.path.dirname(target))
            if parent and ":" in parent:
                info["bus"] = parent  # a virtio device's PCI function
            driver = os.path.join(target, "driver")
            if os.path.islink(driver):
                info["driver"] = os.path.basename(os.path.realpath(driver))
        except OSError as exc:
            sample.errors[rel] = describe_error(rel, exc)
            return
        sample.files[rel] = json.dumps(info, sort_keys=True)

    def read_ethtool(self, sample: RawSample, iface: str) -> None:
        rel = f"{ETHTOOL_DIR}/{iface}.json"
        if not self.live_extras:
            if os.path.exists(self.path(rel)) or rel in self.recorded_errors:
                self.read(sample, rel)
            return
        from netdoctor.sources.ethtool import query_ethtool

        answer, error = query_ethtool(iface)
        if answer is not None:
            sample.files[rel] = json.dumps(answer, sort_keys=True)
        if error:
            sample.errors[rel] = error

    def read_sockets(self, sample: RawSample) -> None:
        """/proc/net/{tcp,tcp6,udp,udp6}: exact text into `sample.files`, parsed tables into `sample.parsed`.

        Why not `read` + parse: at 100k+ sockets the kernel's formatting alone costs about what `ss -tan`
        does, so the files are streamed (owners.stream_files) and parsed chunk by chunk while the kernel
        formats the rest. Errors are reported as `read` reports them; a table that does not parse is not
        cached, so the collector parses the text again and reports where it fails.
        """
        from netdoctor.sources.owners import stream_files
        from netdoctor.sources.parsers.sockets import SocketTableBuilder

        opened: list[tuple[str, int, _SocketFileSink]] = []
        try:
            for rel, proto, family in SOCKET_FILES:
                if rel in self.recorded_errors:
                    sample.errors[rel] = self.recorded_errors[rel]
                    if not os.path.exists(self.path(rel)):
                        continue
                try:
                    fd = os.open(self.path(rel), os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    sample.errors[rel] = describe_error(rel, exc)
                    continue
                opened.append((rel, fd, _SocketFileSink(SocketTableBuilder(proto, family))))
            failures = stream_files([fd for _, fd, _ in opened], [sink.feed for _, _, sink in opened])
        finally:
            for _, fd, _ in opened:
                os.close(fd)
        for (rel, _fd, sink), failure in zip(opened, failures, strict=True):
            if failure is not None:
                sample.errors[rel] = describe_error(rel, failure)
                continue
            try:
                sample.files[rel] = sink.text()
            except UnicodeDecodeError as exc:
                sample.errors[rel] = describe_error(rel, exc)
                continue
            table = sink.table()
            if table is not None:
                sample.parsed[rel] = table

    def read_owners(self, sample: RawSample) -> None:
        """Which process holds each CLOSE_WAIT socket, each listener with a queue, each UDP socket with drops.

        Only those: scanning every fd of every process costs time proportional to all
        sockets on the host, and the checks name owners only for these.
        """
        if not self.live_extras:
            if os.path.exists(self.path(OWNERS_FILE)) or OWNERS_FILE in self.recorded_errors:
                self.read(sample, OWNERS_FILE)
            return
        from netdoctor.sources.owners import find_socket_owners
        from netdoctor.sources.parsers.sockets import parse_socket_table

        wanted: set[int] = set()
        for rel, proto, family in SOCKET_FILES:
            text = sample.files.get(rel)
            if text is None:
                continue
            table = sample.parsed.get(rel)
            if table is None:
                try:
                    table = parse_socket_table(text, proto, family)
                except ParseError:
                    continue
                sample.parsed[rel] = table
            if proto == "tcp":
                wanted.update(s.inode for s in table.in_state("CLOSE_WAIT") if s.inode)
                wanted.update(s.inode for s in table.listeners() if s.rx_queue > 0 and s.inode)
            else:
                # UDP sockets that dropped datagrams: the socket_buffers check names their owner.
                wanted.update(s.inode for s in table if s.drops > 0 and s.inode)
        owners = find_socket_owners(self.path("proc"), wanted) if wanted else {}
        sample.files[OWNERS_FILE] = json.dumps(
            {str(inode): [pid, comm] for inode, (pid, comm) in sorted(owners.items())}, sort_keys=True
        )
