"""socket_states: TIME_WAIT against tcp_max_tw_buckets, CLOSE_WAIT by owning process, orphans."""

from __future__ import annotations

import os
import socket

import pytest
from netdoctor.checks import socket_states

from netdoctor.model import EntityKind, Severity, Status
from netdoctor.sources.inventory import Inventory
from netdoctor.sources.parsers.sockets import parse_socket_table
from tests.viewbuilder import make_view

T = socket_states.THRESHOLDS
TW, OVERFLOW, ORPHAN = socket_states.TW, socket_states.TW_OVERFLOW, socket_states.ORPHAN
HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
CLOSE_WAIT, ESTABLISHED = 0x08, 0x01


def _hex(ip: str) -> str:
    return socket.inet_aton(ip)[::-1].hex().upper()


def rows(
    local: str, lports: range | list[int], remote: str, rport: int, state: int, first_inode: int
) -> list[str]:
    return [
        f"{n:4d}: {_hex(local)}:{lport:04X} {_hex(remote)}:{rport:04X} {state:02X} 00000000:00000000"
        f" 00:00000000 00000000  1000        0 {first_inode + n} 1 0000000000000000 20 4 30 10 -1\n"
        for n, lport in enumerate(lports)
    ]


def inventory(lines: list[str], owners: dict | None = None, **sysctls: str) -> Inventory:
    return Inventory(
        sockets=parse_socket_table(HEADER + "".join(lines), "tcp", 4),
        socket_owners=owners or {},
        sysctls={"net.ipv4." + k: v for k, v in sysctls.items()},
    )


def gauges(tw: float = 10.0, orphan: float = 0.0, overflow: tuple[float, float] | None = (0.0, 0.0)):
    before: dict = {TW: tw, ORPHAN: orphan}
    after: dict = {TW: tw, ORPHAN: orphan}
    if overflow is not None:
        before[OVERFLOW], after[OVERFLOW] = overflow
    return before, after


def run(inv: Inventory | None, **kw) -> list:
    before, after = gauges(**kw)
    return socket_states.run(make_view(before, after, 10.0, inventory=inv), T)


# tcp_max_tw_buckets 1000: warn above 700, critical above 900.
@pytest.mark.parametrize(
    ("tw", "expected"),
    [(700, None), (701, Severity.WARNING), (900, Severity.WARNING), (901, Severity.CRITICAL)],
)
def test_timewait_boundaries(tw: float, expected: Severity | None) -> None:
    findings = run(inventory([], tcp_max_tw_buckets="1000"), tw=tw)
    if expected is None:
        [finding] = findings
        assert finding.status is Status.HEALTHY
        assert f"TIME_WAIT {tw:.0f} of 1000 buckets" in finding.summary
        return
    [finding] = findings
    assert finding.severity is expected
    assert finding.tags == ["timewait_buildup"]
    assert finding.magnitude == pytest.approx(tw / 1000 / 0.7)
    assert finding.evidence[0].threshold == pytest.approx(700)


def test_any_timewait_overflow_warns_even_far_below_the_limit() -> None:
    [finding] = run(inventory([], tcp_max_tw_buckets="262144"), tw=5, overflow=(100.0, 101.0))
    assert finding.severity is Severity.WARNING
    assert "overflow 0.10/s" in finding.summary


def test_closewait_per_process_boundary_names_the_process() -> None:
    owners = {500 + n: (321, "java") for n in range(50)}
    [healthy] = run(
        inventory(rows("10.0.0.1", range(30000, 30049), "10.0.0.9", 443, CLOSE_WAIT, 500), owners)
    )
    assert healthy.status is Status.HEALTHY
    assert "CLOSE_WAIT 49 (most: java (pid 321) 49)" in healthy.summary
    [finding] = run(
        inventory(rows("10.0.0.1", range(30000, 30050), "10.0.0.9", 443, CLOSE_WAIT, 500), owners)
    )
    assert finding.severity is Severity.WARNING
    assert finding.entity.kind is EntityKind.PROCESS and finding.entity.name == "java (pid 321)"
    assert finding.tags == ["closewait_buildup"]
    assert "never called close()" in finding.summary and "10.0.0.9:443 (50)" in finding.summary


def test_closewait_spread_thin_but_sizable_names_the_biggest_holder() -> None:
    lines = []
    owners = {}
    for group in range(4):  # 4 processes x 25 sockets on a server port: 100 in total, none >= 50
        lines += rows(
            "10.0.0.1", [8000 + group] * 25, "10.0.1.1", 40000 + group, CLOSE_WAIT, 1000 * (group + 1)
        )
        owners.update({1000 * (group + 1) + n: (100 + group, f"worker{group}") for n in range(25)})
    [finding] = run(inventory(lines, owners))
    assert finding.severity is Severity.WARNING
    assert finding.entity.kind is EntityKind.PROCESS
    assert "host total 100" in finding.summary
    # 99 in total: quiet.
    owners.pop(1000)
    [healthy] = run(inventory(lines[1:], owners))
    assert healthy.status is Status.HEALTHY


def test_closewait_critical_near_the_fd_limit() -> None:
    owners = {1 + n: (77, "python3") for n in range(1000)}
    [finding] = run(inventory(rows("10.0.0.1", range(30000, 31000), "10.0.0.9", 80, CLOSE_WAIT, 1), owners))
    assert finding.severity is Severity.CRITICAL


def test_closewait_unknown_owner_is_grouped_by_local_endpoint_and_said() -> None:
    [finding] = run(inventory(rows("10.0.0.1", [8080] * 60, "10.0.0.9", 5000, CLOSE_WAIT, 1)))
    assert finding.entity.kind is EntityKind.SOCKET and finding.entity.name == "10.0.0.1:8080"
    assert "unknown" in finding.summary


def test_established_sockets_are_not_closewait() -> None:
    [finding] = run(inventory(rows("10.0.0.1", range(30000, 30500), "10.0.0.9", 80, ESTABLISHED, 1)))
    assert finding.status is Status.HEALTHY and "CLOSE_WAIT 0" in finding.summary


@pytest.mark.parametrize(
    ("orphans", "expected"), [(700, None), (701, Severity.WARNING), (901, Severity.CRITICAL)]
)
def test_orphans_against_tcp_max_orphans(orphans: float, expected: Severity | None) -> None:
    findings = run(inventory([], tcp_max_orphans="1000", tcp_max_tw_buckets="1000"), orphan=orphans)
    assert findings[0].severity is (expected or Severity.OK)
    if expected is None:
        assert "orphans 700 of 1000" in findings[0].summary


def test_prometheus_default_fields_cannot_judge_and_say_what_was_seen() -> None:
    # No inventory: tcp_max_tw_buckets unknown, TCPTimeWaitOverflow not in node_exporter's default fields.
    [finding] = run(None, tw=50000, overflow=None)
    assert finding.status is Status.CANNOT_JUDGE
    assert "TIME_WAIT 50000: tcp_max_tw_buckets not known" in finding.summary
    assert "CLOSE_WAIT: not visible from node_exporter" in finding.summary
    assert "tcp_max_orphans not known" in finding.summary


def test_prometheus_with_overflow_counter_judges_tw_and_says_closewait_is_not_visible() -> None:
    [finding] = run(None, tw=50000, overflow=(7.0, 7.0))
    assert finding.status is Status.HEALTHY
    assert "TIME_WAIT 50000, overflow 0.00/s" in finding.summary
    assert "not judged: " in finding.summary and "CLOSE_WAIT: not visible" in finding.summary
    [finding] = run(None, tw=50000, overflow=(7.0, 8.0))
    assert finding.severity is Severity.WARNING and finding.tags == ["timewait_buildup"]


def test_nothing_readable_cannot_judge() -> None:
    view = make_view({}, {}, missing={"node_sockstat_": "cannot read /proc/net/sockstat: no such file"})
    [finding] = socket_states.run(view, T)
    assert finding.status is Status.CANNOT_JUDGE
    assert "no such file" in finding.summary


def test_timewait_counted_from_inventory_when_sockstat_missing() -> None:
    lines = [
        f"{n:4d}: 0100007F:{40000 + n:04X} 0100007F:0050 06 00000000:00000000 03:000016D2 00000000"
        "     0        0 0 3 0000000000000000\n"
        for n in range(8)
    ]
    view = make_view({}, {}, inventory=inventory(lines, tcp_max_tw_buckets="10"))
    [finding] = socket_states.run(view, T)
    assert finding.severity is Severity.WARNING
    assert "TIME_WAIT 8 of 10" in finding.summary


@pytest.mark.parametrize("hostile", [float("nan"), -5.0, float("inf")])
def test_hostile_gauges_are_not_judged(hostile: float) -> None:
    [finding] = run(None, tw=hostile, orphan=hostile, overflow=None)
    assert finding.status is Status.CANNOT_JUDGE
    assert "node_sockstat_TCP_tw is not a usable number" in finding.summary


@pytest.mark.real
def test_real_kernel_closewait_held_by_this_process() -> None:
    """60 real connections whose peer closed and whose server side never calls close(): CLOSE_WAIT, named."""
    from netdoctor.sources.owners import find_socket_owners

    listener = socket.socket()
    accepted: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        for _ in range(60):
            client = socket.create_connection(("127.0.0.1", port))
            accepted.append(listener.accept()[0])
            client.close()  # the peer closes; the accepted side stays open -> CLOSE_WAIT
        with open("/proc/net/tcp") as tcp:
            table = parse_socket_table(tcp.read(), "tcp", 4)
        mine = {s.inode for s in table.in_state("CLOSE_WAIT") if s.local_port == port}
        assert len(mine) == 60
        inv = Inventory(sockets=table, socket_owners=find_socket_owners("/proc", mine))
        findings = socket_states.run(make_view({}, {}, inventory=inv), T)
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
    [finding] = [
        f for f in findings if f.entity.kind is EntityKind.PROCESS and f"pid {os.getpid()})" in f.entity.name
    ]
    assert finding.severity is Severity.WARNING
    assert "60 CLOSE_WAIT sockets" in finding.summary
