"""listen_queue: ListenOverflows/ListenDrops rates and full accept queues, named by listener and owner."""

from __future__ import annotations

import os
import socket
import time

import pytest
from netdoctor.checks import listen_queue

from netdoctor.model import EntityKind, Severity, Status
from netdoctor.sources.inventory import Inventory
from netdoctor.sources.parsers.sockets import parse_socket_table
from netdoctor.view import SampleView
from tests.viewbuilder import host_netstat_sample, make_view

T = listen_queue.THRESHOLDS
OVF, DROPS = listen_queue.OVERFLOWS, listen_queue.DROPS
HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def tcp_row(n: int, local: str, lport: int, state: int, rx: int = 0, tx: int = 0, inode: int = 0) -> str:
    lip = socket.inet_aton(local)[::-1].hex().upper()
    return (
        f"{n:4d}: {lip}:{lport:04X} 00000000:0000 {state:02X} {tx:08X}:{rx:08X} 00:00000000 00000000"
        f"     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
    )


def inventory(rows: list[str], somaxconn: int | None = 4096, owners: dict | None = None) -> Inventory:
    sysctls = {"net.core.somaxconn": str(somaxconn)} if somaxconn is not None else {}
    return Inventory(
        sockets=parse_socket_table(HEADER + "".join(rows), "tcp", 4),
        socket_owners=owners or {},
        sysctls=sysctls,
    )


def view(rate_overflows: float, rate_drops: float | None = None, inv: Inventory | None = None, interval=10.0):
    before = {OVF: 1000.0, DROPS: 1000.0}
    after = {OVF: 1000.0 + rate_overflows * interval}
    after[DROPS] = 1000.0 + (rate_overflows if rate_drops is None else rate_drops) * interval
    return make_view(before, after, interval, inventory=inv)


def test_quiet_counters_and_no_queue_is_healthy_with_evidence() -> None:
    inv = inventory([tcp_row(0, "0.0.0.0", 80, 0x0A, inode=11)])
    [finding] = listen_queue.run(view(0.0, inv=inv), T)
    assert finding.status is Status.HEALTHY
    assert "among 1 listeners" in finding.summary
    assert {e.metric for e in finding.evidence} == {OVF, DROPS}


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(1.0, None), (1.1, Severity.WARNING), (5.0, Severity.WARNING), (5.1, Severity.CRITICAL)],
)
def test_rate_boundaries(rate: float, expected: Severity | None) -> None:
    findings = listen_queue.run(view(rate), T)
    if expected is None:
        assert [f.status for f in findings] == [Status.HEALTHY]
        assert "not judged: listeners" in findings[0].summary
    else:
        [finding] = findings
        assert finding.severity is expected
        assert finding.tags == ["listen_overflow"]
        assert finding.magnitude == pytest.approx(rate / 1.0)
        assert "no socket inventory" in finding.summary
        assert finding.fixes[0].fix_id == "backlog"
        assert finding.fixes[0].params["backlog"] == 4096


def test_listen_drops_alone_fire() -> None:
    [finding] = listen_queue.run(view(0.0, rate_drops=3.0), T)
    assert finding.severity is Severity.WARNING
    assert "3.0/s" in finding.summary


def test_queue_at_somaxconn_is_full_and_names_listener_and_process() -> None:
    rows = [tcp_row(0, "10.0.0.1", 8080, 0x0A, rx=129, inode=77), tcp_row(1, "0.0.0.0", 22, 0x0A, inode=5)]
    inv = inventory(rows, somaxconn=128, owners={77: (4242, "gunicorn")})
    findings = listen_queue.run(view(2.0, inv=inv), T)
    [finding] = findings
    assert finding.entity.kind is EntityKind.LISTENER
    assert finding.entity.name == "10.0.0.1:8080"
    assert "gunicorn (pid 4242)" in finding.summary
    assert finding.severity is Severity.WARNING
    assert finding.confidence == 1.0
    fix = finding.fixes[0]
    assert fix.params == {"backlog": 4096, "listener": "10.0.0.1:8080", "somaxconn": 4096}
    assert fix.command == "sysctl -w net.core.somaxconn=4096"


def test_full_queue_is_named_even_when_counters_are_quiet() -> None:
    inv = inventory([tcp_row(0, "0.0.0.0", 443, 0x0A, rx=4096, inode=9)], somaxconn=4096)
    [finding] = listen_queue.run(view(0.0, inv=inv), T)
    assert finding.severity is Severity.WARNING
    assert finding.entity.name == "0.0.0.0:443"
    assert "owner unknown" in finding.summary
    # A queue of 4096 means a backlog of ~4096: the fix doubles it, and somaxconn with it.
    assert finding.fixes[0].params["backlog"] == 8192
    assert finding.fixes[0].params["somaxconn"] == 8192


def test_backed_up_listener_named_only_while_overflowing() -> None:
    rows = [tcp_row(0, "127.0.0.1", 5000, 0x0A, rx=4, inode=3)]
    quiet = listen_queue.run(view(0.0, inv=inventory(rows)), T)
    assert [f.status for f in quiet] == [Status.HEALTHY]
    assert "1 with connections waiting" in quiet[0].summary
    [finding] = listen_queue.run(view(6.0, inv=inventory(rows)), T)
    assert finding.severity is Severity.CRITICAL
    assert finding.entity.name == "127.0.0.1:5000"
    assert finding.confidence == 0.7
    assert "somaxconn" not in finding.fixes[0].params  # 4096 already covers max(4096, 2 x 4)


def test_known_backlog_in_tx_queue_is_used() -> None:
    inv = inventory([tcp_row(0, "0.0.0.0", 80, 0x0A, rx=100, tx=100, inode=1)])
    [finding] = listen_queue.run(view(0.0, inv=inv), T)
    assert finding.magnitude == pytest.approx(1.0)
    inv = inventory([tcp_row(0, "0.0.0.0", 80, 0x0A, rx=99, tx=100, inode=1)])
    assert listen_queue.run(view(0.0, inv=inv), T)[0].status is Status.HEALTHY


def test_missing_counters_and_no_inventory_cannot_judge() -> None:
    v = make_view({}, {}, missing={"node_netstat_": "cannot read /proc/net/netstat: permission denied"})
    [finding] = listen_queue.run(v, T)
    assert finding.status is Status.CANNOT_JUDGE
    assert "permission denied" in finding.summary


def test_missing_counters_with_inventory_cannot_judge_unless_a_queue_is_full() -> None:
    v = make_view({}, {}, inventory=inventory([tcp_row(0, "0.0.0.0", 80, 0x0A, rx=1, inode=1)]))
    [finding] = listen_queue.run(v, T)
    assert finding.status is Status.CANNOT_JUDGE  # a snapshot cannot show drops that already happened
    assert "ListenOverflows" in finding.summary and "none full" in finding.summary
    v = make_view({}, {}, inventory=inventory([tcp_row(0, "0.0.0.0", 80, 0x0A, rx=4096, inode=1)]))
    [finding] = listen_queue.run(v, T)
    assert finding.severity is Severity.WARNING and finding.entity.name == "0.0.0.0:80"


def test_counter_without_earlier_sample_is_not_read_as_zero() -> None:
    v = make_view({}, {OVF: 5.0, DROPS: 5.0})
    [finding] = listen_queue.run(v, T)
    assert finding.status is Status.CANNOT_JUDGE
    assert "no earlier sample" in finding.summary


def test_zero_interval_does_not_crash_or_pass_as_healthy() -> None:
    v = make_view({OVF: 1.0, DROPS: 1.0}, {OVF: 9.0, DROPS: 9.0}, interval_s=0.0)
    [finding] = listen_queue.run(v, T)
    assert finding.status is Status.CANNOT_JUDGE


def test_counter_reset_counts_from_zero() -> None:
    v = make_view({OVF: 5000.0, DROPS: 5000.0}, {OVF: 100.0, DROPS: 100.0}, interval_s=10.0)
    [finding] = listen_queue.run(v, T)
    assert finding.severity is Severity.CRITICAL  # 100 in 10 s = 10/s after the reset


def test_socket_table_unreadable_is_said() -> None:
    inv = Inventory(missing={"sockets": "cannot read /proc/net/tcp: permission denied"})
    [finding] = listen_queue.run(view(0.0, inv=inv), T)
    assert finding.status is Status.HEALTHY
    assert "listeners: cannot read /proc/net/tcp" in finding.summary


@pytest.mark.real
def test_real_kernel_listener_that_never_accepts() -> None:
    """A real listener with backlog 1 and 20 connects: the kernel counts overflows, the check names it."""
    from netdoctor.sources.owners import find_socket_owners

    listener = socket.socket()
    clients: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        first = host_netstat_sample()
        for _ in range(20):
            client = socket.socket()
            client.setblocking(False)
            clients.append(client)
            client.connect_ex(("127.0.0.1", port))
        time.sleep(0.3)
        second = host_netstat_sample()
        with open("/proc/net/tcp") as tcp, open("/proc/sys/net/core/somaxconn") as somaxconn:
            table = parse_socket_table(tcp.read(), "tcp", 4)
            sysctls = {"net.core.somaxconn": somaxconn.read().strip()}
        [mine] = [s for s in table.listeners() if s.local_port == port]
        assert mine.rx_queue == 2 and mine.tx_queue == 0  # backlog + 1 waiting; /proc has no backlog
        owners = find_socket_owners("/proc", {mine.inode})
        inv = Inventory(sockets=table, socket_owners=owners, sysctls=sysctls)
        view = SampleView(first, second, 1.0, source="live test", inventory=inv)
        findings = listen_queue.run(view, T)
    finally:
        for client in clients:
            client.close()
        listener.close()
    [finding] = [f for f in findings if f.entity.name == f"127.0.0.1:{port}"]
    assert finding.severity is Severity.CRITICAL  # >= 18 overflows in a 1 s window
    assert f"(pid {os.getpid()})" in finding.summary
    assert finding.evidence[1].value >= 18


def test_backlog_from_sock_diag_marks_a_small_listener_full() -> None:
    """/proc says tx_queue 0; the sock_diag limit (inventory.listen_backlogs) says the queue of 2 is full."""
    inv = inventory([tcp_row(0, "10.0.0.1", 8080, 0x0A, rx=2, inode=77)])
    assert listen_queue.run(view(0.0, inv=inv), T)[0].status is Status.HEALTHY
    inv.listen_backlogs = {77: 1}
    [finding] = listen_queue.run(view(0.0, inv=inv), T)
    assert finding.entity.name == "10.0.0.1:8080"
    assert finding.confidence == 1.0
    assert "backlog 1" in finding.summary
