"""The Prometheus source against the real `prometheus` binary over backfilled history.

One Prometheus (module fixture) holds several scenario hosts, each its own `instance`:
- ct:9100       conntrack table filling over 40 minutes, full for the last 5 (with drops)
- past:9100     an incident 3 h ago (conntrack 95% full, softnet drops) that is over now
- softirq:9100  CPU 1 at 80% softirq with softnet drops and squeezes
- reset:9100    node_exporter restarted 2 min ago: every counter reset to 0
- noct:9100     no conntrack collector; conntrack series of partial:9100 stopped 30 min ago
- gone:9100     every series stopped 20 min ago (host down)
- big:9100      64 CPUs, 20 interfaces (query count must not grow)
- a"b\\c        an instance label with quote and backslash (escaping must find it)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from netdoctor.engine import diagnose, load_checks
from netdoctor.errors import SourceError
from netdoctor.model import EntityKind, Severity, Status
from netdoctor.sources.prometheus import PrometheusSource, diagnose_instance, needs_of
from tests.conftest import REPO
from tests.prom import CountingProxy, History, SilentListener, free_port, healthy_host, prometheus_over

pytestmark = pytest.mark.real

NOW = time.time()
FILL_START = NOW - 45 * 60
FILL_END = FILL_START + 40 * 60
LIMIT = 262144
PAST_START, PAST_END = NOW - 3 * 3600, NOW - 2.5 * 3600
HOSTILE = 'a"b\\c'


def _fill(t: float) -> float:
    if t < FILL_START:
        return 1000.0
    return min(1000.0 + (t - FILL_START) / (FILL_END - FILL_START) * (LIMIT - 1000), float(LIMIT))


def _scenarios() -> History:
    history = History(NOW - 4 * 3600, NOW)
    for name in ("ct:9100", "past:9100", "softirq:9100", "reset:9100", "noct:9100", "partial:9100", HOSTILE):
        healthy_host(history, name)
    ct = {"instance": "ct:9100", "job": "node"}
    history.gauge("node_nf_conntrack_entries", ct, _fill)
    history.counter("node_nf_conntrack_stat_drop", ct, lambda t: 50.0 if t >= FILL_END else 0.0)

    past = {"instance": "past:9100", "job": "node"}
    in_incident = lambda t: PAST_START <= t <= PAST_END  # noqa: E731
    history.gauge("node_nf_conntrack_entries", past, lambda t: 0.95 * LIMIT if in_incident(t) else 1000)
    history.counter("node_softnet_dropped_total", {**past, "cpu": "0"}, lambda t: 300.0 if in_incident(t) else 0)

    s = {"instance": "softirq:9100", "job": "node", "cpu": "1"}
    hot = lambda t: t >= NOW - 20 * 60  # noqa: E731
    history.counter("node_cpu_seconds_total", {**s, "mode": "softirq"}, lambda t: 0.8 if hot(t) else 0.01)
    history.counter("node_cpu_seconds_total", {**s, "mode": "idle"}, lambda t: 0.05 if hot(t) else 0.84)
    history.counter("node_softnet_dropped_total", s, lambda t: 200.0 if hot(t) else 0.0)
    history.counter("node_softnet_times_squeezed_total", s, lambda t: 50.0 if hot(t) else 0.0)

    reset_at = [NOW - 120]
    r = {"instance": "reset:9100", "job": "node"}
    history.counter("node_netstat_Tcp_OutSegs", r, 2000, initial=9e9, reset_at=reset_at)
    history.counter("node_netstat_Tcp_RetransSegs", r, 1, initial=5e6, reset_at=reset_at)
    history.counter("node_softnet_dropped_total", {**r, "cpu": "0"}, 0, initial=1e6, reset_at=reset_at)

    healthy_host(history, "gone:9100")
    for key, points in history.series.items():
        if dict(key[1]).get("instance") == "gone:9100":
            history.series[key] = [(t, v) for t, v in points if t <= NOW - 20 * 60]
    for key in [k for k in history.series if dict(k[1]).get("instance") == "noct:9100"]:
        if key[0].startswith("node_nf_conntrack"):
            del history.series[key]
    partial = {"instance": "partial:9100", "job": "node"}
    history.gauge("node_nf_conntrack_entries", partial, 1000, until=NOW - 30 * 60)
    history.gauge("node_nf_conntrack_entries_limit", partial, LIMIT, until=NOW - 30 * 60)

    healthy_host(history, "big:9100", cpus=64)
    for i in range(1, 20):
        d = {"instance": "big:9100", "job": "node", "device": f"eth{i}"}
        history.counter("node_network_receive_packets_total", d, 10)
        history.counter("node_network_receive_bytes_total", d, 1000)
    return history


@pytest.fixture(scope="module")
def prom() -> Iterator[str]:
    with prometheus_over(_scenarios()) as url:
        yield url


@pytest.fixture(scope="module")
def checks():
    return load_checks(use_entry_points=False)


def _by_check(diagnosis, check: str):
    return [f for f in diagnosis.all_findings() if f.check == check]


def test_conntrack_filled_over_40_minutes(prom: str, checks) -> None:
    with CountingProxy(prom) as proxy:
        diagnosis = diagnose_instance(PrometheusSource(proxy.url, "ct:9100", at=NOW), checks)
        assert len(proxy.queries()) == 1, proxy.requests  # the documented budget: one query
    findings = [f for f in _by_check(diagnosis, "conntrack") if f.status is Status.PROBLEM]
    assert {f.severity for f in findings} == {Severity.CRITICAL}
    fill = next(f for f in findings if "full at peak" in f.summary)
    # fill crossed 75% of the limit at this time; the peak is reached when the table is full.
    crossing = FILL_START + (0.75 * LIMIT - 1000) / (LIMIT - 1000) * (FILL_END - FILL_START)
    assert fill.started_at == pytest.approx(crossing, abs=16)
    assert fill.peaked_at == pytest.approx(FILL_END, abs=16)
    assert any(e.note == "peak over 1h" for e in fill.evidence)
    assert len(fill.history) > 10
    assert max(fill.history, key=lambda point: point[1])[0] == pytest.approx(fill.peaked_at, abs=16)
    assert diagnosis.exit_code() == 2


def test_past_incident_found_by_at_not_by_now(prom: str, checks) -> None:
    now = diagnose_instance(PrometheusSource(prom, "past:9100"), checks)
    assert [f.status for f in _by_check(now, "conntrack")] == [Status.HEALTHY]
    assert all(f.status is not Status.PROBLEM for f in _by_check(now, "softirq_drops"))

    at = PAST_END - 5 * 60
    then = diagnose_instance(PrometheusSource(prom, "past:9100", at=at), checks)
    conntrack = [f for f in _by_check(then, "conntrack") if f.status is Status.PROBLEM]
    assert conntrack and conntrack[0].severity is Severity.CRITICAL
    assert conntrack[0].started_at == pytest.approx(PAST_START, abs=16)
    softnet = [f for f in _by_check(then, "softirq_drops") if f.status is Status.PROBLEM]
    assert softnet and any(f.entity.name == "0" for f in softnet)
    assert then.at == pytest.approx(at, abs=1e-3)


def test_softirq_saturation_with_drops(prom: str, checks) -> None:
    diagnosis = diagnose_instance(PrometheusSource(prom, "softirq:9100", at=NOW), checks)
    problems = [f for f in _by_check(diagnosis, "softirq_drops") if f.status is Status.PROBLEM]
    cpu1 = [f for f in problems if f.entity.kind is EntityKind.CPU and f.entity.name == "1"]
    assert cpu1 and cpu1[0].severity is Severity.CRITICAL
    rates = [e.value for f in cpu1 for e in f.evidence if e.metric == "node_softnet_dropped_total"]
    assert rates and rates[0] == pytest.approx(200.0, rel=0.01)
    assert cpu1[0].started_at == pytest.approx(NOW - 20 * 60, abs=31)


def test_counter_reset_is_not_a_spike(prom: str, checks) -> None:
    view = PrometheusSource(prom, "reset:9100", at=NOW).view(needs_of(checks.specs))
    [out] = view.rate("node_netstat_Tcp_OutSegs")
    assert out.value == pytest.approx(2000, rel=0.01)
    assert view.rate_sum("node_softnet_dropped_total") == 0
    [retrans] = [f for f in diagnose(view, checks).all_findings() if f.check == "retransmits"]
    assert retrans.status is Status.HEALTHY


def test_missing_collector_is_named_never_healthy(prom: str, checks) -> None:
    diagnosis = diagnose_instance(PrometheusSource(prom, "noct:9100", at=NOW), checks)
    [conntrack] = _by_check(diagnosis, "conntrack")
    assert conntrack.status is Status.CANNOT_JUDGE
    assert "--collector.conntrack" in conntrack.summary
    view = PrometheusSource(prom, "noct:9100", at=NOW).view(needs_of(checks.specs))
    why = view.why_missing("node_netstat_TcpExt_TCPBacklogDrop")
    assert "--collector.netstat.fields omits TCPBacklogDrop" in why
    assert not view.has("node_netstat_TcpExt_TCPBacklogDrop")


def test_stale_series_say_when_they_were_last_seen(prom: str, checks) -> None:
    # Pinned to the history's own "now": the suite may reach this test minutes after the backfill.
    diagnosis = diagnose_instance(PrometheusSource(prom, "partial:9100", at=NOW), checks)
    [conntrack] = _by_check(diagnosis, "conntrack")
    assert conntrack.status is Status.CANNOT_JUDGE and "stale" in conntrack.summary
    with pytest.raises(SourceError, match=r"no sample in the 5m before .*\(20 min earlier\)"):
        PrometheusSource(prom, "gone:9100", at=NOW).view(needs_of(checks.specs))


def test_query_count_does_not_grow_with_cpus_or_interfaces(prom: str, checks) -> None:
    with CountingProxy(prom) as proxy:
        view = PrometheusSource(proxy.url, "big:9100").view(needs_of(checks.specs))
        assert len(proxy.queries()) == 1
    assert len(view.rate("node_softnet_processed_total")) == 64
    assert len(view.rate("node_network_receive_packets_total")) == 21


def test_hostile_instance_cannot_change_the_query(prom: str, checks) -> None:
    with CountingProxy(prom) as proxy:
        with pytest.raises(SourceError, match="unknown instance"):
            PrometheusSource(proxy.url, 'x"}or vector(1)#').view(needs_of(checks.specs))
    # A real label value with a quote and a backslash is found exactly.
    view = PrometheusSource(prom, HOSTILE, at=NOW).view(needs_of(checks.specs))
    assert {p.labels["instance"] for p in view.gauge("node_nf_conntrack_entries")} == {HOSTILE}


def test_unknown_instance_suggests_the_close_one(prom: str) -> None:
    with pytest.raises(SourceError, match="did you mean ct:9100"):
        PrometheusSource(prom, "ct:9101").view(["node_nf_conntrack_entries"])


def test_prometheus_down_is_one_clear_line() -> None:
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}", "ct:9100", timeout_s=2)
    started = time.monotonic()
    with pytest.raises(SourceError, match="cannot reach Prometheus .* connection refused"):
        source.view(["up"])
    assert time.monotonic() - started < 2


def test_timeout_against_a_prometheus_that_never_answers() -> None:
    with SilentListener() as silent:
        started = time.monotonic()
        with pytest.raises(SourceError, match="did not answer the query within 1 s"):
            PrometheusSource(silent.url, "ct:9100", timeout_s=1).view(["up"])
        assert time.monotonic() - started < 5


def test_lookback_beyond_retention() -> None:
    history = History(NOW - 50 * 60, NOW)
    healthy_host(history, "new:9100")
    with prometheus_over(history, retention="1h") as url:
        checks = load_checks(use_entry_points=False)
        view = PrometheusSource(url, "new:9100", lookback_s=2 * 86400).view(needs_of(checks.specs))
        assert any("reaches past Prometheus's retention (1h)" in p for p in view.problems)
        with pytest.raises(SourceError, match="older than Prometheus's retention"):
            PrometheusSource(url, "new:9100", at=NOW - 3 * 86400).view(["up"])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "netdoctor", "diagnose", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_cli_history_table_and_exit_codes(prom: str) -> None:
    done = _cli("--prometheus", prom, "--instance", "ct:9100")
    assert done.returncode == 2, done.stderr
    assert "conntrack table" in done.stdout and "history (UTC" in done.stdout
    assert any(bar in done.stdout for bar in "▁▂▃▄▅▆▇█")

    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(PAST_END - 300))
    assert _cli("--prometheus", prom, "--instance", "past:9100", "--at", at).returncode == 2

    down = _cli("--prometheus", f"http://127.0.0.1:{free_port()}", "--instance", "x:1", "--timeout", "2")
    assert down.returncode == 3 and "Traceback" not in down.stderr and "cannot reach" in down.stderr
    bad_at = _cli("--prometheus", prom, "--instance", "ct:9100", "--at", "yesterday")
    assert bad_at.returncode == 3 and "not a time" in bad_at.stderr
    unknown = _cli("--prometheus", prom, "--instance", 'x"}or vector(1)#')
    assert unknown.returncode == 3 and "unknown instance" in unknown.stderr and "Traceback" not in unknown.stderr
