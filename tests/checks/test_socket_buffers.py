"""socket_buffers: UDP buffer errors, TCP receive-queue drops, and the UDP sockets that are dropping."""

from __future__ import annotations

import math
import os
import socket

import pytest
from netdoctor.checks import socket_buffers

from netdoctor.model import EntityKind, Severity, Status
from netdoctor.sources.inventory import Inventory
from netdoctor.sources.parsers.sockets import parse_socket_table
from netdoctor.view import SampleView
from tests.viewbuilder import host_netstat_sample, make_view

T = socket_buffers.THRESHOLDS
UDP_RCV = "node_netstat_Udp_RcvbufErrors"
UDP6_RCV = "node_netstat_Udp6_RcvbufErrors"
UDP_SND = "node_netstat_Udp_SndbufErrors"
RCVQ = "node_netstat_TcpExt_TCPRcvQDrop"
PRUNE = "node_netstat_TcpExt_PruneCalled"
BACKLOG = "node_netstat_TcpExt_TCPBacklogDrop"
ALL = socket_buffers.NEEDS
HEADER = (
    "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
    "   uid  timeout inode ref pointer drops\n"
)


def udp_row(n: int, local: str, port: int, rx: int, drops: int, inode: int) -> str:
    lip = socket.inet_aton(local)[::-1].hex().upper()
    return (
        f"{n:5d}: {lip}:{port:04X} 00000000:0000 07 00000000:{rx:08X} 00:00000000 00000000"
        f"   105        0 {inode} 2 0000000000000000 {drops}\n"
    )


def counters(rates: dict[str, float], interval: float = 10.0, only: list[str] | None = None):
    """Every counter of the check at 1000, those in `rates` rising by rate x interval."""
    names = ALL if only is None else only
    before = {name: 1000.0 for name in names}
    after = {name: 1000.0 + rates.get(name, 0.0) * interval for name in names}
    return before, after


def run(rates: dict[str, float], inv: Inventory | None = None, only: list[str] | None = None) -> list:
    before, after = counters(rates, only=only)
    return socket_buffers.run(make_view(before, after, 10.0, inventory=inv), T)


def test_quiet_counters_are_healthy_with_each_rate() -> None:
    [finding] = run({})
    assert finding.status is Status.HEALTHY
    assert "Udp_RcvbufErrors 0.00/s" in finding.summary and "TcpExt_TCPBacklogDrop 0.00/s" in finding.summary
    assert len(finding.evidence) == len(ALL)
    assert "not judged" not in finding.summary


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(10.0, None), (10.1, Severity.WARNING), (100.0, Severity.WARNING), (100.1, Severity.CRITICAL)],
)
def test_udp_buffer_error_boundaries(rate: float, expected: Severity | None) -> None:
    findings = run({UDP6_RCV: rate})
    if expected is None:
        assert [f.status for f in findings] == [Status.HEALTHY]
        return
    [finding] = findings
    assert finding.severity is expected
    assert finding.tags == ["socket_buffer_overflow"]
    assert "Udp6_RcvbufErrors" in finding.summary
    assert finding.magnitude == pytest.approx(rate / 10.0)
    fix = finding.fixes[0]
    assert fix.params["rmem_max"] == 8388608  # current unknown: 8 MiB
    assert fix.command == "sysctl -w net.core.rmem_max=8388608"


def test_send_buffer_errors_fire_without_a_receive_fix() -> None:
    [finding] = run({UDP_SND: 20.0})
    assert finding.severity is Severity.WARNING and finding.fixes == []


@pytest.mark.parametrize("metric", [RCVQ, BACKLOG, "node_netstat_TcpExt_RcvPruned"])
def test_any_tcp_receive_drop_warns(metric: str) -> None:
    [finding] = run({metric: 0.1})
    assert finding.severity is Severity.WARNING
    assert finding.confidence == 1.0
    assert finding.magnitude == pytest.approx(1.0 + math.log10(1.1))


def test_prune_called_alone_warns_with_lower_confidence() -> None:
    [finding] = run({PRUNE: 2.0})
    assert finding.severity is Severity.WARNING
    assert finding.confidence == pytest.approx(0.6)
    assert "no loss yet" in finding.summary


def test_fix_doubles_a_large_current_rmem_max() -> None:
    inv = Inventory(sysctls={"net.core.rmem_max": "16777216"})
    [finding] = run({UDP_RCV: 50.0}, inv)
    assert finding.fixes[0].params["rmem_max"] == 33554432
    inv = Inventory(sysctls={"net.core.rmem_max": "212992"})
    [finding] = run({UDP_RCV: 50.0}, inv)
    assert finding.fixes[0].params["rmem_max"] == 8388608


def test_prometheus_default_fields_say_which_counters_were_not_judged() -> None:
    udp_only = [UDP_RCV, UDP6_RCV, UDP_SND, "node_netstat_Udp6_SndbufErrors"]
    [finding] = run({}, only=udp_only)
    assert finding.status is Status.HEALTHY
    for name in ("TCPRcvQDrop", "PruneCalled", "RcvPruned", "TCPBacklogDrop"):
        assert f"TcpExt_{name} (" in finding.summary.split("not judged:")[1]


def test_no_counter_at_all_cannot_judge() -> None:
    view = make_view({}, {}, missing={"node_netstat_": "cannot read /proc/net/snmp: no such file"})
    [finding] = socket_buffers.run(view, T)
    assert finding.status is Status.CANNOT_JUDGE
    assert "no such file" in finding.summary


def test_zero_interval_is_not_read_as_zero() -> None:
    before, after = counters({})
    [finding] = socket_buffers.run(make_view(before, after, 0.0), T)
    assert finding.status is Status.CANNOT_JUDGE


def udp_inventory(rows: list[str], owners: dict | None = None) -> Inventory:
    return Inventory(sockets=parse_socket_table(HEADER + "".join(rows), "udp", 4), socket_owners=owners or {})


def test_dropping_udp_socket_with_a_queue_is_named_with_its_owner() -> None:
    rows = [
        udp_row(0, "0.0.0.0", 514, rx=212000, drops=9000, inode=41),  # syslog receiver falling behind
        udp_row(1, "127.0.0.1", 53, rx=0, drops=3, inode=42),  # dropped once, queue empty now: not named
        udp_row(2, "0.0.0.0", 123, rx=768, drops=0, inode=43),  # queued but never dropped: not named
    ]
    findings = run({UDP_RCV: 50.0}, udp_inventory(rows, {41: (900, "rsyslogd")}))
    assert [f.entity.kind for f in findings] == [EntityKind.HOST, EntityKind.SOCKET]
    sock = findings[1]
    assert sock.entity.name == "0.0.0.0:514"
    assert "rsyslogd (pid 900)" in sock.summary and "9000 datagrams" in sock.summary
    assert sock.confidence == pytest.approx(0.9)


def test_old_drops_on_a_quiet_host_are_not_a_finding() -> None:
    rows = [udp_row(0, "10.1.2.3", 8125, rx=4096, drops=12, inode=7)]
    [finding] = run({}, udp_inventory(rows))
    assert finding.status is Status.HEALTHY


def test_dropping_socket_is_named_with_low_confidence_when_udp_counters_are_missing() -> None:
    rows = [udp_row(0, "10.1.2.3", 8125, rx=4096, drops=12, inode=7)]
    tcp_only = [RCVQ, PRUNE, BACKLOG]
    [finding] = run({}, udp_inventory(rows), only=tcp_only)
    assert finding.entity.name == "10.1.2.3:8125"
    assert "owner unknown" in finding.summary
    assert finding.confidence == pytest.approx(0.5)


@pytest.mark.real
def test_real_kernel_udp_receiver_that_never_reads() -> None:
    """A real UDP socket with a 4 KiB buffer flooded on loopback: RcvbufErrors rise, the socket is named."""
    from netdoctor.sources.owners import find_socket_owners

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        first = host_netstat_sample()
        for _ in range(500):
            sender.sendto(b"x" * 1000, ("127.0.0.1", port))
        second = host_netstat_sample()
        with open("/proc/net/udp") as udp:
            table = parse_socket_table(udp.read(), "udp", 4)
        [mine] = [s for s in table if s.local_port == port]
        assert mine.drops > 0 and mine.rx_queue > 0
        inv = Inventory(sockets=table, socket_owners=find_socket_owners("/proc", {mine.inode}))
        findings = socket_buffers.run(SampleView(first, second, 1.0, source="live test", inventory=inv), T)
    finally:
        sender.close()
        receiver.close()
    [counter] = [f for f in findings if f.evidence[0].metric == UDP_RCV]
    assert counter.severity is Severity.CRITICAL  # hundreds of drops in a 1 s window
    [named] = [f for f in findings if f.entity.name == f"127.0.0.1:{port}"]
    assert f"(pid {os.getpid()})" in named.summary
    assert named.confidence == pytest.approx(0.9)
