"""ephemeral_ports: per (local ip, remote ip, remote port) use of the usable ephemeral range."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from netdoctor.checks import ephemeral_ports

from netdoctor.model import EntityKind, Severity, Status
from netdoctor.sources.inventory import Inventory
from netdoctor.sources.parsers.sockets import parse_socket_table
from tests.conftest import REPO, require_binary, require_root
from tests.viewbuilder import make_view

T = ephemeral_ports.THRESHOLDS
HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
ESTABLISHED, TIME_WAIT, LISTEN = 0x01, 0x06, 0x0A


def _hex(ip: str) -> str:
    return socket.inet_aton(ip)[::-1].hex().upper()


def tcp_rows(local: str, remote: str, rport: int, ports: range, state: int = ESTABLISHED) -> list[str]:
    """/proc/net/tcp rows, in the kernel's shapes (TIME_WAIT rows are shorter and have inode 0)."""
    rows = []
    for n, port in enumerate(ports):
        head = f"{n:4d}: {_hex(local)}:{port:04X} {_hex(remote)}:{rport:04X} {state:02X} 00000000:00000000"
        if state == TIME_WAIT:
            rows.append(f"{head} 03:000016D2 00000000     0        0 0 3 0000000000000000\n")
        else:
            rows.append(
                f"{head} 00:00000000 00000000  1000        0 {1000 + n} 1 0000000000000000 20 4 30 10 -1\n"
            )
    return rows


def inventory(rows: list[str], port_range: str | None = "40000 40099", **sysctls: str) -> Inventory:
    values = {"net.ipv4." + k: v for k, v in sysctls.items()}
    if port_range is not None:
        values["net.ipv4.ip_local_port_range"] = port_range
    return Inventory(sockets=parse_socket_table(HEADER + "".join(rows), "tcp", 4), sysctls=values)


def run(inv: Inventory | None, before: dict | None = None, after: dict | None = None) -> list:
    return ephemeral_ports.run(make_view(before or {}, after or {}, inventory=inv), T)


# Range 40000-40099: 100 usable ports; warn above 70, critical above 90.
@pytest.mark.parametrize(
    ("in_use", "expected"),
    [(70, None), (71, Severity.WARNING), (90, Severity.WARNING), (91, Severity.CRITICAL)],
)
def test_boundaries_on_a_small_range(in_use: int, expected: Severity | None) -> None:
    findings = run(inventory(tcp_rows("10.0.0.1", "10.0.0.2", 80, range(40000, 40000 + in_use))))
    if expected is None:
        [finding] = findings
        assert finding.status is Status.HEALTHY
        assert f"busiest uses {in_use} of 100" in finding.summary
        assert "10.0.0.2" not in finding.summary  # a destination that is fine is not named
        return
    [finding] = findings
    assert finding.severity is expected
    assert finding.entity.kind is EntityKind.DESTINATION and finding.entity.name == "10.0.0.2:80"
    assert "from 10.0.0.1" in finding.summary
    assert finding.tags == ["ports_exhausted"]
    assert finding.magnitude == pytest.approx(in_use / 100 / 0.7)
    assert finding.evidence[0].value == in_use and finding.evidence[0].threshold == pytest.approx(70)


def test_kernel_default_range_28232_usable() -> None:
    default = "32768\t60999"
    quiet = run(inventory(tcp_rows("10.0.0.1", "10.0.0.2", 443, range(32768, 32768 + 19762)), default))
    assert quiet[0].status is Status.HEALTHY and "of 28232" in quiet[0].summary
    [finding] = run(inventory(tcp_rows("10.0.0.1", "10.0.0.2", 443, range(32768, 32768 + 19763)), default))
    assert finding.severity is Severity.WARNING
    fix = finding.fixes[0]
    assert fix.fix_id == "ports"
    assert fix.params["port_range"] == [1024, 65535]
    assert "tcp_tw_reuse" not in fix.params  # none in TIME_WAIT
    assert fix.command.startswith('sysctl -w net.ipv4.ip_local_port_range="1024 65535"')


def test_reserved_ports_shrink_the_usable_range() -> None:
    rows = tcp_rows("10.0.0.1", "10.0.0.2", 80, range(40010, 40010 + 64))  # 64 > 70% of 90
    findings = run(inventory(rows, ip_local_reserved_ports="40000-40009,50000"))
    assert findings[0].severity is Severity.WARNING
    assert "64 of 90" in findings[0].summary
    # Sockets bound to a reserved port are not ephemeral: they do not count.
    rows = tcp_rows("10.0.0.1", "10.0.0.2", 80, range(40000, 40064))
    assert run(inventory(rows, ip_local_reserved_ports="40000-40009"))[0].status is Status.HEALTHY


def test_timewait_share_proposes_tw_reuse_and_counts_it() -> None:
    rows = tcp_rows("10.0.0.1", "10.0.0.3", 5432, range(40000, 40060), TIME_WAIT)
    rows += tcp_rows("10.0.0.1", "10.0.0.3", 5432, range(40060, 40095))
    [finding] = run(inventory(rows, tcp_tw_reuse="2"))
    assert finding.severity is Severity.CRITICAL
    assert "60 in TIME_WAIT" in finding.summary
    assert finding.fixes[0].params["tcp_tw_reuse"] == 1
    assert "tcp_tw_reuse=1" in finding.fixes[0].command
    # Already 1: not proposed again.
    [finding] = run(inventory(rows, tcp_tw_reuse="1"))
    assert "tcp_tw_reuse" not in finding.fixes[0].params


def test_only_the_exhausted_destination_is_named_per_tuple() -> None:
    # The same local ports toward another destination, and from another local address: separate tuples.
    rows = tcp_rows("10.0.0.1", "10.0.0.2", 80, range(40000, 40080))
    rows += tcp_rows("10.0.0.1", "10.0.0.9", 80, range(40000, 40050))
    rows += tcp_rows("10.0.0.5", "10.0.0.2", 80, range(40000, 40050))
    findings = run(inventory(rows))
    assert [(f.entity.name, "from 10.0.0.1" in f.summary) for f in findings] == [("10.0.0.2:80", True)]


def test_listeners_entering_the_widened_range_are_proposed_as_reserved() -> None:
    rows = tcp_rows("0.0.0.0", "0.0.0.0", 0, range(8080, 8081), LISTEN)
    rows += tcp_rows("10.0.0.1", "10.0.0.2", 80, range(40000, 40095))
    [finding] = run(inventory(rows))
    assert finding.fixes[0].params["reserved_ports"] == [8080]
    assert "ip_local_reserved_ports=8080" in finding.fixes[0].command


def test_range_already_widest_says_so() -> None:
    rows = tcp_rows("10.0.0.1", "10.0.0.2", 80, range(1024, 1024 + 60000))
    [finding] = run(inventory(rows, port_range="1024 65535"))
    assert finding.fixes[0].command == ""
    assert "already at its widest" in finding.fixes[0].summary


def test_connect_failure_counters_are_shown_when_present() -> None:
    rows = tcp_rows("10.0.0.1", "10.0.0.2", 80, range(40000, 40095))
    metric = "node_netstat_Tcp_AttemptFails"
    [finding] = run(inventory(rows), {metric: 10.0}, {metric: 60.0})
    [failures] = [e for e in finding.evidence if e.metric == metric]
    assert failures.value == pytest.approx(5.0)


def test_no_inventory_cannot_judge_and_says_why() -> None:
    [finding] = run(None, {"node_sockstat_TCP_tw": 5.0}, {"node_sockstat_TCP_tw": 5.0})
    assert finding.status is Status.CANNOT_JUDGE
    assert "no per-destination socket data" in finding.summary


def test_unreadable_socket_table_cannot_judge() -> None:
    inv = Inventory(missing={"sockets": "cannot read /proc/net/tcp: permission denied"})
    [finding] = run(inv)
    assert finding.status is Status.CANNOT_JUDGE
    assert "permission denied" in finding.summary


def test_no_connections_is_healthy() -> None:
    [finding] = run(inventory([]))
    assert finding.status is Status.HEALTHY
    assert "busiest uses 0 of 100" in finding.summary


def test_unknown_range_assumes_kernel_default_with_lower_confidence() -> None:
    rows = tcp_rows("10.0.0.1", "10.0.0.2", 80, range(32768, 32768 + 25500))
    [finding] = run(inventory(rows, port_range=None))
    assert finding.severity is Severity.CRITICAL
    assert finding.confidence == pytest.approx(0.7)
    assert "kernel default assumed" in finding.evidence[2].note


def test_fully_reserved_range_is_critical_not_a_division_by_zero() -> None:
    [finding] = run(inventory([], port_range="40000 40001", ip_local_reserved_ports="40000-40001"))
    assert finding.severity is Severity.CRITICAL
    assert "no usable ephemeral port" in finding.summary


def test_unparsable_sysctls_fall_back_and_say_so() -> None:
    rows = tcp_rows("10.0.0.1", "10.0.0.2", 80, range(40000, 40095))
    [finding] = run(inventory(rows, port_range="40000 garbage", ip_local_reserved_ports="x-y"))
    assert finding.status is Status.HEALTHY  # default range 28232: 95 ports is nothing
    assert "ip_local_port_range unparsable" in finding.summary
    assert "ip_local_reserved_ports unparsable" in finding.summary


NETNS_SCRIPT = """
import json, socket
from netdoctor.checks import ephemeral_ports
from netdoctor.sources.inventory import Inventory
from netdoctor.sources.parsers.sockets import parse_socket_table
from tests.viewbuilder import make_view

with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
    f.write("40000 40009")  # per network namespace: 10 usable ports
servers = []
for port in (8080, 8081):
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen(64)
    servers.append(s)
clients = [socket.create_connection(("127.0.0.1", 8080)) for _ in range(8)]
# The kernel reuses connect()-picked ports toward another destination: these 3 still succeed.
clients += [socket.create_connection(("127.0.0.1", 8081)) for _ in range(3)]
sysctls = {}
for name in ("ip_local_port_range", "ip_local_reserved_ports"):
    with open("/proc/sys/net/ipv4/" + name) as f:
        sysctls["net.ipv4." + name] = f.read()
with open("/proc/net/tcp") as f:
    inv = Inventory(sockets=parse_socket_table(f.read(), "tcp", 4), sysctls=sysctls)
findings = ephemeral_ports.run(make_view({}, {}, inventory=inv), ephemeral_ports.THRESHOLDS)
print(json.dumps([[f.severity.name, f.entity.name, f.summary, f.fixes[0].params] for f in findings]))
"""


@pytest.mark.real
def test_real_kernel_port_range_of_one_namespace() -> None:
    """In a fresh network namespace with a 10-port range, 8 connections to one server exhaust 80% of it."""
    require_root()
    ip = require_binary("ip")
    netns = f"ndtest-eph-{os.getpid()}"
    subprocess.run([ip, "netns", "add", netns], check=True)
    try:
        subprocess.run([ip, "-n", netns, "link", "set", "lo", "up"], check=True)
        done = subprocess.run(
            [ip, "netns", "exec", netns, sys.executable, "-c", NETNS_SCRIPT],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
    finally:
        subprocess.run([ip, "netns", "del", netns], check=True)
    [[severity, entity, summary, params]] = json.loads(done.stdout)
    assert (severity, entity) == ("WARNING", "127.0.0.1:8080")
    assert "8 of 10 in use" in summary and "from 127.0.0.1" in summary
    assert params["port_range"] == [1024, 65535]
    assert params["reserved_ports"] == [8080, 8081]  # the listeners the widened range would cover
