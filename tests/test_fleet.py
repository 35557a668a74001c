"""Fleet ranking against the real Prometheus: 200 instances, exactly three sick, constant queries."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from netdoctor.engine import load_checks
from netdoctor.errors import SourceError
from netdoctor.fleet import SIGNALS, rank_fleet, render_fleet
from netdoctor.model import Severity
from netdoctor.sources.prometheus import PrometheusClient
from netdoctor.sources.promql import parse_selector
from tests.prom import CountingProxy, History, prometheus_over

pytestmark = pytest.mark.real

NOW = time.time()  # queries pin at=NOW: the suite may reach these tests minutes after collection
SICK = {"host-017:9100": "softnet", "host-123:9100": "conntrack", "host-188:9100": "retrans"}


def fleet_host(history: History, instance: str, *, sick: str = "", env: str = "prod") -> None:
    """The series the fleet signals read, for a 2-CPU host; `sick` picks one problem."""
    base = {"instance": instance, "job": "node", "env": env}
    history.gauge("up", base, 1)
    for cpu in ("0", "1"):
        c = {**base, "cpu": cpu}
        history.counter("node_cpu_seconds_total", {**c, "mode": "softirq"}, 0.02)
        history.counter("node_cpu_seconds_total", {**c, "mode": "idle"}, 0.9)
        drops = 500.0 if sick == "softnet" and cpu == "1" else 0.0
        history.counter("node_softnet_dropped_total", c, drops)
        history.counter("node_softnet_times_squeezed_total", c, 0)
    d = {**base, "device": "eth0"}
    for direction in ("receive", "transmit"):
        history.counter(f"node_network_{direction}_packets_total", d, 5000)
        history.counter(f"node_network_{direction}_bytes_total", d, 5e6)
        history.counter(f"node_network_{direction}_errs_total", d, 0)
        history.counter(f"node_network_{direction}_drop_total", d, 0)
    history.gauge("node_network_speed_bytes", d, 1.25e9)
    history.gauge("node_nf_conntrack_entries", base, 0.95 * 65536 if sick == "conntrack" else 2000)
    history.gauge("node_nf_conntrack_entries_limit", base, 65536)
    for stat in ("drop", "early_drop", "insert_failed"):
        history.counter(f"node_nf_conntrack_stat_{stat}", base, 0)
    history.counter("node_netstat_Tcp_OutSegs", base, 4000)
    history.counter("node_netstat_Tcp_RetransSegs", base, 120 if sick == "retrans" else 2)
    history.counter("node_netstat_TcpExt_ListenOverflows", base, 0)
    history.counter("node_netstat_Udp_RcvbufErrors", base, 0)
    history.counter("node_netstat_Udp_SndbufErrors", base, 0)


@pytest.fixture(scope="module")
def prom() -> Iterator[str]:
    history = History(NOW - 20 * 60, NOW)
    for i in range(200):
        name = f"host-{i:03d}:9100"
        fleet_host(history, name, sick=SICK.get(name, ""), env="prod" if i < 150 else "staging")
    with prometheus_over(history) as url:
        yield url


def _thresholds() -> dict:
    return {spec.id: spec.thresholds for spec in load_checks(use_entry_points=False).specs}


def test_200_instances_three_sick_ranked_with_constant_queries(prom: str) -> None:
    with CountingProxy(prom) as proxy:
        client = PrometheusClient(proxy.url)
        report = rank_fleet(client, at=NOW, check_thresholds=_thresholds())
        assert len(proxy.queries()) == len(SIGNALS) + 1 == 11
    assert len(report.instances) == 200
    top = [(r.instance, r.severity, r.worst.signal if r.worst else None) for r in report.instances[:4]]
    assert top[:3] == [
        ("host-017:9100", Severity.CRITICAL, "softnet_drops"),  # 500 drops/s: log-scaled magnitude 3.7
        ("host-123:9100", Severity.CRITICAL, "conntrack_fill"),  # 95% > 90%: magnitude 0.95/0.75
        ("host-188:9100", Severity.WARNING, "retransmits"),  # 3% > 1%
    ]
    assert top[3][1] is Severity.OK
    assert all(not r.not_judged for r in report.instances), report.instances[0].not_judged
    assert report.exit_code() == 2
    retrans = report.instances[2].worst
    assert retrans is not None and retrans.value == pytest.approx(0.03, rel=0.02)
    text = render_fleet(report)
    assert "host-017:9100" in text and "healthy: 197 instance(s)" in text


def test_selector_narrows_the_fleet_not_the_query_count(prom: str) -> None:
    with CountingProxy(prom) as proxy:
        report = rank_fleet(PrometheusClient(proxy.url), at=NOW, selector=parse_selector('{env="staging"}'))
        assert len(proxy.queries()) == 11
    assert len(report.instances) == 50
    assert report.instances[0].instance == "host-188:9100"
    assert report.exit_code() == 1


def test_thresholds_follow_overrides(prom: str) -> None:
    report = rank_fleet(
        PrometheusClient(prom), at=NOW, check_thresholds=_thresholds(), overrides={"retransmits": {"warn_ratio": 0.05}}
    )
    assert "host-188:9100" not in [r.instance for r in report.instances if r.severity >= Severity.WARNING]


def test_empty_selector_match_is_a_clear_error(prom: str) -> None:
    with pytest.raises(SourceError, match="no instance matches"):
        rank_fleet(PrometheusClient(prom), at=NOW, selector=parse_selector('{job="nope"}'))
