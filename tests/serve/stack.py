"""Helpers for serve tests: an incident in a real Prometheus, Alertmanager-shaped payloads, HTTP.

`incident_history(now)` holds two node_exporter hosts over the last two hours:
`healthy:9100`, quiet, and `incident:9100`, whose conntrack table fills to 99% in the last
20 minutes while insert_failed / drop rise and TCP retransmits climb to 8% — the causal
chain conntrack full -> drops -> retransmits, so the right top finding is `conntrack`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from tests.prom import History, healthy_host

INCIDENT = "incident:9100"
HEALTHY = "healthy:9100"
LIMIT = 262144


def incident_history(now: float | None = None, *, minutes_before: float = 120) -> History:
    end = time.time() if now is None else now
    history = History(start=end - minutes_before * 60, end=end)
    healthy_host(history, HEALTHY)
    healthy_host(history, INCIDENT)
    onset = end - 20 * 60
    base = {"instance": INCIDENT, "job": "node"}

    def bad(normal: float, during: float):  # noqa: ANN202 - small local helper
        return lambda t: during if t >= onset else normal

    history.gauge("node_nf_conntrack_entries", base, bad(1000, LIMIT * 0.99))
    history.gauge("node_nf_conntrack_entries_limit", base, LIMIT)
    history.counter("node_nf_conntrack_stat_insert_failed", base, bad(0, 40))
    history.counter("node_nf_conntrack_stat_drop", base, bad(0, 60))
    history.counter("node_netstat_Tcp_RetransSegs", base, bad(1, 160))
    history.counter("node_netstat_TcpExt_TCPTimeouts", base, bad(0, 20))
    return history


def am_alert(
    alertname: str = "NetdoctorConntrackTableNearlyFull",
    instance: str = INCIDENT,
    *,
    status: str = "firing",
    starts_at: float | None = None,
    ends_at: float | None = None,
    fingerprint: str | None = "0123456789abcdef",
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One alert as Alertmanager 0.25 writes it into a webhook payload."""
    start = time.time() - 60 if starts_at is None else starts_at
    labels = {"alertname": alertname, "instance": instance, "job": "node", "severity": "critical"}
    labels.update(extra_labels or {})
    alert: dict[str, Any] = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{instance} conntrack table 99% full"},
        "startsAt": rfc3339(start),
        "endsAt": rfc3339(ends_at) if ends_at else "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=x",
    }
    if fingerprint is not None:
        alert["fingerprint"] = fingerprint
    return alert


def rfc3339(ts: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{whole}.{int((ts % 1) * 1e9):09d}Z"


def am_payload(alerts: list[dict[str, Any]], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="x"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "netdoctor",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": alerts,
    }


def http(
    method: str,
    url: str,
    body: bytes | dict[str, Any] | None = None,
    *,
    token: str | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request; (status, headers, body) for every status, 4xx/5xx included."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None and content_type:
        request.add_header("Content-Type", content_type)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_for(predicate: Any, timeout_s: float = 60.0, step_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(step_s)
