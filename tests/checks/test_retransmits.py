"""retransmits: ratio RetransSegs/OutSegs with a minimum-traffic guard."""

from __future__ import annotations

import math
import subprocess
import sys

from netdoctor.checks import retransmits

from netdoctor.causes import TCP_RETRANSMITS
from netdoctor.model import EntityKind, Severity, Status
from tests.checks.test_nic_errors import exporter_in, in_netns, real_netns, view_between
from tests.conftest import require_binary
from tests.viewbuilder import make_view

RETRANS = "node_netstat_Tcp_RetransSegs"
OUT = "node_netstat_Tcp_OutSegs"
TIMEOUTS = "node_netstat_TcpExt_TCPTimeouts"
SYN = "node_netstat_TcpExt_TCPSynRetrans"


def _view(out_in_window: float, retrans_in_window: float, interval: float = 10.0, extra=None, **kw):
    before = {OUT: 5_000_000.0, RETRANS: 1_000.0}
    after = {OUT: 5_000_000.0 + out_in_window, RETRANS: 1_000.0 + retrans_in_window}
    for metric, increase in (extra or {}).items():
        before[metric] = 10.0
        after[metric] = 10.0 + increase
    return make_view(before, after, interval, **kw)


def run(view, **overrides):
    return retransmits.run(view, {**retransmits.THRESHOLDS, **overrides})


def test_two_percent_warns_with_timeouts_and_syn_evidence():
    findings = run(_view(100_000, 2_000, extra={TIMEOUTS: 300, SYN: 50}))
    assert len(findings) == 1
    finding = findings[0]
    assert finding.severity is Severity.WARNING
    assert finding.entity.kind is EntityKind.HOST
    assert TCP_RETRANSMITS in finding.tags
    assert math.isclose(finding.magnitude, 2.0)
    by_metric = {e.metric: e for e in finding.evidence}
    assert math.isclose(by_metric["tcp_retransmit_ratio"].value, 0.02)
    assert math.isclose(by_metric[TIMEOUTS].value, 30.0)
    assert math.isclose(by_metric[SYN].value, 5.0)
    assert by_metric[OUT].window_s == 10.0
    assert "RTO timeouts 30/s" in finding.summary


def test_boundaries():
    assert run(_view(100_000, 1_000))[0].status is Status.HEALTHY  # exactly 1%: "> 1%"
    assert run(_view(100_000, 1_001))[0].severity is Severity.WARNING
    assert run(_view(100_000, 5_000))[0].severity is Severity.WARNING  # exactly 5%
    assert run(_view(100_000, 5_001))[0].severity is Severity.CRITICAL


def test_healthy_reports_the_ratio():
    finding = run(_view(100_000, 100))[0]
    assert finding.status is Status.HEALTHY
    assert "0.10%" in finding.summary
    assert finding.confidence == 1.0


def test_minimum_traffic_guard():
    # 999 segments with 500 retransmitted: too few to judge, said so, at reduced confidence.
    low = run(_view(999, 500))[0]
    assert low.status is Status.HEALTHY and low.confidence == 0.5
    assert "too little TCP traffic" in low.summary and "999" in low.summary
    # exactly at the guard the ratio is judged
    assert run(_view(1_000, 500))[0].severity is Severity.CRITICAL
    # the guard scales with the window: 1000 segments over 5 minutes is enough
    assert run(_view(1_000, 20, interval=300.0))[0].severity is Severity.WARNING
    assert run(_view(50_000, 5_000), min_out_segs=100_000)[0].status is Status.HEALTHY


def test_zero_traffic_does_not_divide_by_zero():
    finding = run(_view(0, 0))[0]
    assert finding.status is Status.HEALTHY and finding.confidence == 0.5


def test_missing_counters_cannot_judge():
    view = make_view({OUT: 1.0}, {OUT: 2.0}, missing={"node_netstat_": "cannot read /proc/net/snmp"})
    finding = run(view)[0]
    assert finding.status is Status.CANNOT_JUDGE
    assert "/proc/net/snmp" in finding.summary


def test_side_evidence_is_optional():
    finding = run(_view(100_000, 10_000))[0]
    assert finding.severity is Severity.CRITICAL
    assert {e.metric for e in finding.evidence} == {"tcp_retransmit_ratio", OUT, RETRANS}


def test_hostile_values():
    assert run(_view(100_000, 100, interval=0.0))[0].status is Status.CANNOT_JUDGE
    nan_view = make_view({OUT: math.nan, RETRANS: 0.0}, {OUT: math.nan, RETRANS: 5.0})
    assert run(nan_view)[0].status is Status.CANNOT_JUDGE
    # a counter reset (after < before) is counted from zero, never a negative ratio
    reset = make_view({OUT: 1e9, RETRANS: 1e6}, {OUT: 20_000.0, RETRANS: 10.0})
    assert run(reset)[0].status is Status.HEALTHY
    huge = run(_view(1e15, 1e14))[0]
    assert huge.severity is Severity.CRITICAL and math.isfinite(huge.magnitude)


# --- real kernel, real node_exporter: TCP over a veth between two namespaces, nft dropping a share ----------

SERVER = """
import socket
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("10.78.0.2", 5001))
srv.listen(1)
print("ready", flush=True)
conn, _ = srv.accept()
while conn.recv(1 << 16):
    pass
"""
CLIENT = """
import socket, sys
sock = socket.create_connection(("10.78.0.2", 5001), timeout=30)
chunk = b"x" * 65536
for _ in range(int(sys.argv[1])):
    sock.sendall(chunk)
sock.close()
"""


def _tcp_pair(drop_percent: int, chunks: int):
    """Send chunks x 64 KiB from netns `cli` to `srv`; returns the View of the client's counters."""
    with real_netns("rtx-cli") as cli, real_netns("rtx-srv") as srv:
        subprocess.run(
            ["ip", "-n", cli, "link", "add", "c0", "type", "veth", "peer", "name", "s0", "netns", srv],
            check=True,
        )
        for ns, dev, addr in ((cli, "c0", "10.78.0.1/24"), (srv, "s0", "10.78.0.2/24")):
            subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", dev], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        if drop_percent:
            require_binary("nft")
            rules = (
                "table inet ndchk {\n chain input {\n type filter hook input priority 0;\n"
                f" tcp dport 5001 numgen random mod 100 < {drop_percent} drop\n }}\n}}\n"
            )
            in_netns(srv, "nft", "-f", "-", stdin=rules)
        server = subprocess.Popen(
            ["ip", "netns", "exec", srv, sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            with exporter_in(cli, ["netstat"]) as scrape:
                first = scrape()
                in_netns(cli, sys.executable, "-c", CLIENT, str(chunks))
                second = scrape()
        finally:
            server.kill()
            server.wait(timeout=5)
    return view_between(first, second), first, second


def test_real_lossy_path_is_flagged_and_matches_the_kernel_counters():
    view, first, second = _tcp_pair(drop_percent=5, chunks=200)
    finding = run(view)[0]
    assert finding.severity in (Severity.WARNING, Severity.CRITICAL)
    retrans = second.series[RETRANS][()] - first.series[RETRANS][()]
    out = second.series[OUT][()] - first.series[OUT][()]
    ratio = next(e for e in finding.evidence if e.metric == "tcp_retransmit_ratio")
    assert out >= 1000 and math.isclose(ratio.value, retrans / out)
    assert ratio.value > 0.01


def test_real_clean_path_is_healthy():
    view, _, _ = _tcp_pair(drop_percent=0, chunks=200)
    finding = run(view)[0]
    assert finding.status is Status.HEALTHY and finding.confidence == 1.0


def test_stalled_connections_below_the_traffic_guard_warn() -> None:
    """Seen in a real capture: OutSegs +0, RetransSegs +38 in 2 s, RTO timeouts rising."""
    from netdoctor.checks import retransmits as check

    before = {check.OUT: 1000, check.RETRANS: 10, check.TIMEOUTS: 5, check.SYN_RETRANS: 0}
    after = {check.OUT: 1000, check.RETRANS: 48, check.TIMEOUTS: 20, check.SYN_RETRANS: 0}
    [finding] = check.run(make_view(before, after, 2.0), check.THRESHOLDS)
    assert finding.severity.name == "WARNING"
    assert "stalled" in finding.summary
    # a quiet host with a couple of retransmits and no RTOs stays healthy
    after_quiet = {check.OUT: 1010, check.RETRANS: 12, check.TIMEOUTS: 5, check.SYN_RETRANS: 0}
    [quiet] = check.run(make_view(before, after_quiet, 2.0), check.THRESHOLDS)
    assert quiet.status.value == "healthy"
