"""retransmits: ratio RetransSegs/OutSegs with a minimum-traffic guard."""

from __future__ import annotations

import math

from netdoctor.checks import retransmits

from netdoctor.causes import TCP_RETRANSMITS
from netdoctor.model import EntityKind, Severity, Status
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
