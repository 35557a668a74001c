"""Rank every instance of a fleet by its worst network problem, from Prometheus.

Prometheus is the engine that scales: each signal is one PromQL expression aggregated
server-side `by (instance)`, so a fleet diagnosis costs a **constant number of HTTP
queries** — 1 roster query (`up`) + one per signal in `SIGNALS` (11 in all) — whether
the fleet has 3 hosts or 3,000. netdoctor adds no store of its own; point `--prometheus`
at Thanos or Mimir for fleets one Prometheus cannot hold.

Thresholds come from the checks' THRESHOLDS (with config/--set overrides), so the fleet
view and `diagnose --instance` agree on what is a problem. Values are compared
client-side (the queries return every instance's value, not only the bad ones), so an
instance with no data for a signal is "could not judge", never "healthy".

Signals are evaluated at `--at` over `--window`; the conntrack fill uses its peak over
`--lookback`, as the conntrack check does. For the full per-check diagnosis of one
instance (evidence, causes, fixes), run `diagnose --instance` on the top of the list.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netdoctor.errors import SourceError
from netdoctor.model import Severity
from netdoctor.sources import promql
from netdoctor.sources.prometheus import PrometheusClient
from netdoctor.sources.promql import Matcher


@dataclass(frozen=True)
class Signal:
    """One server-side aggregated expression and how to judge its per-instance value."""

    id: str
    check: str
    describe: str  # "{value}" is replaced by the formatted value
    unit: str
    warn: Callable[[Mapping[str, Any]], float]
    crit: Callable[[Mapping[str, Any]], float]
    expr: Callable[[str, str, str, Mapping[str, Any], float], str]  # (sel, window, lookback, thresholds, window_s)
    ratio: bool = False


SOFTIRQ_MODE = 'mode="softirq"'


def _sel(selector: str, extra: str = "") -> str:
    inner = selector[1:-1]
    parts = [p for p in (inner, extra) if p]
    return "{" + ",".join(parts) + "}"


def _excluded(selector: str, regex: str) -> str:
    return _sel(selector, f'device!~"{promql.escape_label_value(regex)}"')


def _sum_rates(selector: str, names: Sequence[str], window: str) -> str:
    """Sum of several counters' rates per instance; rate() drops names, so each term gets its own label."""
    terms = [f'label_replace(rate({name}{selector}[{window}]), "counter", "{name}", "", "")' for name in names]
    return f"sum by (instance) ({' or '.join(terms)})"


def _directions(fmt: Callable[[str], str]) -> str:
    """rx and tx variants of one expression, kept apart by a `direction` label, max per instance."""
    parts = [f'label_replace({fmt(d)}, "direction", "{d}", "", "")' for d in ("receive", "transmit")]
    return f"max by (instance) ({parts[0]} or {parts[1]})"


SIGNALS: list[Signal] = [
    Signal(
        "conntrack_fill",
        "conntrack",
        "conntrack table {value} full at peak",
        "",
        lambda t: float(t["warn_fill_ratio"]),
        lambda t: float(t["crit_fill_ratio"]),
        lambda s, w, lb, t, ws: (
            f"max by (instance) (max_over_time(node_nf_conntrack_entries{s}[{lb}])"
            f" / (max_over_time(node_nf_conntrack_entries_limit{s}[{lb}]) > 0))"
        ),
        ratio=True,
    ),
    Signal(
        "conntrack_drops",
        "conntrack",
        "conntrack refusing packets: {value}/s (drop, early_drop, insert_failed)",
        "/s",
        lambda t: float(t["drop_per_s"]),
        lambda t: float(t["drop_per_s"]),
        lambda s, w, lb, t, ws: _sum_rates(
            s, [f"node_nf_conntrack_stat_{f}" for f in ("drop", "early_drop", "insert_failed")], w
        ),
    ),
    Signal(
        "softnet_drops",
        "softirq_drops",
        "softnet backlog drops {value}/s on its worst CPU",
        "/s",
        lambda t: float(t["drop_per_s"]),
        lambda t: float(t["crit_drop_per_s"]),
        lambda s, w, lb, t, ws: f"max by (instance) (rate(node_softnet_dropped_total{s}[{w}]))",
    ),
    Signal(
        "softirq_saturation",
        "softirq_drops",
        "a CPU spends {value} in softirq while dropping or squeezing",
        "",
        lambda t: float(t["softirq_share"]),
        lambda t: max(float(t["softirq_share"]), 0.9),
        lambda s, w, lb, t, ws: (
            f"max by (instance) ((rate(node_cpu_seconds_total{_sel(s, SOFTIRQ_MODE)}[{w}])"
            f" and on (instance, cpu) (rate(node_softnet_dropped_total{s}[{w}]) > {float(t['drop_per_s'])}"
            f" or rate(node_softnet_times_squeezed_total{s}[{w}]) > {float(t['squeeze_per_s'])}))"
            # CPUs that neither drop nor squeeze count as 0: judged, not saturated.
            f" or rate(node_cpu_seconds_total{_sel(s, SOFTIRQ_MODE)}[{w}]) * 0)"
        ),
        ratio=True,
    ),
    Signal(
        "retransmits",
        "retransmits",
        "TCP retransmit ratio {value}",
        "",
        lambda t: float(t["warn_ratio"]),
        lambda t: float(t["crit_ratio"]),
        lambda s, w, lb, t, ws: (
            f"sum by (instance) (rate(node_netstat_Tcp_RetransSegs{s}[{w}]))"
            f" / (sum by (instance) (rate(node_netstat_Tcp_OutSegs{s}[{w}])) >= {float(t['min_out_segs']) / ws!r})"
        ),
        ratio=True,
    ),
    Signal(
        "nic_errors",
        "nic_errors",
        "NIC error ratio {value} on its worst interface",
        "",
        lambda t: float(t["warn_error_ratio"]),
        lambda t: float(t["crit_error_ratio"]),
        lambda s, w, lb, t, ws: _directions(
            lambda d: (
                f"rate(node_network_{d}_errs_total{_excluded(s, t['exclude_iface'])}[{w}])"
                f" / (rate(node_network_{d}_packets_total{_excluded(s, t['exclude_iface'])}[{w}]) > 0)"
            )
        ),
        ratio=True,
    ),
    Signal(
        "nic_drops",
        "nic_errors",
        "NIC drop ratio {value} on its worst interface",
        "",
        lambda t: float(t["warn_drop_ratio"]),
        lambda t: float(t["crit_drop_ratio"]),
        lambda s, w, lb, t, ws: _directions(
            lambda d: (
                f"rate(node_network_{d}_drop_total{_excluded(s, t['exclude_iface'])}[{w}])"
                f" / (rate(node_network_{d}_packets_total{_excluded(s, t['exclude_iface'])}[{w}])"
                f" >= {float(t['drop_min_packets']) / ws!r})"
            )
        ),
        ratio=True,
    ),
    Signal(
        "link_saturation",
        "nic_saturation",
        "link {value} of its speed on its busiest interface and direction",
        "",
        lambda t: float(t["warn_ratio"]),
        lambda t: float(t["crit_ratio"]),
        lambda s, w, lb, t, ws: _directions(
            lambda d: (
                f"rate(node_network_{d}_bytes_total{_excluded(s, t['exclude_iface'])}[{w}])"
                f" / (node_network_speed_bytes{_excluded(s, t['exclude_iface'])} > 0)"
            )
        ),
        ratio=True,
    ),
    Signal(
        "listen_overflows",
        "listen_queue",
        "listen queue overflows {value}/s",
        "/s",
        lambda t: float(t["warn_per_s"]),
        lambda t: float(t["crit_per_s"]),
        lambda s, w, lb, t, ws: f"sum by (instance) (rate(node_netstat_TcpExt_ListenOverflows{s}[{w}]))",
    ),
    Signal(
        "udp_buffer_errors",
        "socket_buffers",
        "UDP buffer errors {value}/s",
        "/s",
        lambda t: float(t["udp_warn_per_s"]),
        lambda t: float(t["udp_crit_per_s"]),
        lambda s, w, lb, t, ws: _sum_rates(
            s, [f"node_netstat_{p}_{f}" for p in ("Udp", "Udp6") for f in ("RcvbufErrors", "SndbufErrors")], w
        ),
    ),
]

# Defaults used only when a check is not loaded (e.g. --checks excludes it): THRESHOLDS.md values.
FALLBACK_THRESHOLDS: dict[str, dict[str, Any]] = {
    "conntrack": {"warn_fill_ratio": 0.75, "crit_fill_ratio": 0.90, "drop_per_s": 0.0},
    "softirq_drops": {"softirq_share": 0.5, "drop_per_s": 0.0, "crit_drop_per_s": 10.0, "squeeze_per_s": 10.0},
    "retransmits": {"warn_ratio": 0.01, "crit_ratio": 0.05, "min_out_segs": 1000},
    "nic_errors": {
        "warn_error_ratio": 0.01,
        "crit_error_ratio": 0.05,
        "warn_drop_ratio": 0.02,
        "crit_drop_ratio": 0.10,
        "drop_min_packets": 10_000,
        "exclude_iface": "^lo$",
    },
    "nic_saturation": {"warn_ratio": 0.90, "crit_ratio": 0.98, "exclude_iface": "^lo$"},
    "listen_queue": {"warn_per_s": 1.0, "crit_per_s": 5.0},
    "socket_buffers": {"udp_warn_per_s": 10.0, "udp_crit_per_s": 100.0},
}


def fleet_thresholds(
    check_thresholds: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Per check: fallback defaults, then the loaded checks' THRESHOLDS, then overrides."""
    out: dict[str, dict[str, Any]] = {}
    for check in {s.check for s in SIGNALS}:
        merged = dict(FALLBACK_THRESHOLDS.get(check, {}))
        merged.update(check_thresholds.get(check, {}))
        merged.update((overrides or {}).get(check, {}))
        out[check] = merged
    return out


@dataclass
class SignalResult:
    signal: str
    check: str
    severity: Severity
    value: float
    threshold: float
    summary: str
    magnitude: float


@dataclass
class InstanceReport:
    instance: str
    up: bool
    results: list[SignalResult] = field(default_factory=list)
    not_judged: list[str] = field(default_factory=list)

    @property
    def worst(self) -> SignalResult | None:
        problems = [r for r in self.results if r.severity >= Severity.WARNING]
        return max(problems, key=lambda r: (r.severity, r.magnitude), default=None)

    @property
    def severity(self) -> Severity:
        worst = self.worst
        if worst is not None:
            return worst.severity
        if not self.up or not self.results:
            return Severity.UNKNOWN
        return Severity.OK

    def sort_key(self) -> tuple[int, float, str]:
        worst = self.worst
        return (-int(self.severity), -(worst.magnitude if worst else 0.0), self.instance)


@dataclass
class FleetReport:
    instances: list[InstanceReport]
    at: float
    window_s: float
    http_requests: int
    url: str
    queries: list[str] = field(default_factory=list)

    def exit_code(self) -> int:
        severities = {r.severity for r in self.instances}
        if Severity.CRITICAL in severities:
            return 2
        if Severity.WARNING in severities:
            return 1
        if not self.instances or Severity.UNKNOWN in severities:
            return 3
        return 0


def _magnitude(value: float, threshold: float) -> float:
    if threshold > 0:
        return max(value / threshold, 1.0)
    return 1.0 + math.log10(1.0 + max(value, 0.0))


def _fmt(value: float, ratio: bool) -> str:
    if ratio:
        return f"{value * 100:.1f}%"
    return f"{value:.3g}"


def judge(signal: Signal, value: float, thresholds: Mapping[str, Any]) -> SignalResult:
    warn, crit = signal.warn(thresholds), signal.crit(thresholds)
    if value > crit:
        severity = Severity.CRITICAL
    elif value > warn:
        severity = Severity.WARNING
    else:
        severity = Severity.OK
    return SignalResult(
        signal=signal.id,
        check=signal.check,
        severity=severity,
        value=value,
        threshold=warn,
        summary=signal.describe.format(value=_fmt(value, signal.ratio)),
        magnitude=_magnitude(value, warn),
    )


def _by_instance(result: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in result:
        instance = (item.get("metric") or {}).get("instance")
        try:
            value = float((item.get("value") or [0, "nan"])[1])
        except (TypeError, ValueError):
            continue
        if instance is not None and math.isfinite(value):
            out[str(instance)] = value
    return out


def fleet_queries(
    selector: Sequence[Matcher], window_s: float, lookback_s: float, thresholds: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """(signal id, PromQL) for the roster and every signal — the whole query budget."""
    sel = promql.selector(selector)
    window, lookback = promql.format_duration(window_s), promql.format_duration(max(lookback_s, window_s))
    out = [("up", f"max by (instance) (up{sel})")]
    for signal in SIGNALS:
        out.append((signal.id, signal.expr(sel, window, lookback, thresholds[signal.check], window_s)))
    return out


def rank_fleet(
    client: PrometheusClient,
    *,
    at: float | None = None,
    window_s: float = 300.0,
    lookback_s: float = 3600.0,
    selector: Sequence[Matcher] = (),
    check_thresholds: Mapping[str, Mapping[str, Any]] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> FleetReport:
    """Every instance matching `selector`, worst first, in len(SIGNALS) + 1 queries."""
    at = time.time() if at is None else at
    thresholds = fleet_thresholds(check_thresholds or {}, overrides)
    queries = fleet_queries(selector, window_s, lookback_s, thresholds)
    values: dict[str, dict[str, float]] = {}
    for signal_id, expr in queries:
        values[signal_id] = _by_instance(client.query(expr, at))
    roster = values.pop("up")
    if not roster:
        where = promql.selector(selector)
        raise SourceError(
            f"no instance matches {where} in Prometheus {client.url} at "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at))} (no `up` series): check --selector and --at"
        )
    reports = []
    for instance, up in roster.items():
        report = InstanceReport(instance=instance, up=up >= 1)
        for signal in SIGNALS:
            value = values[signal.id].get(instance)
            if value is None:
                report.not_judged.append(signal.id)
            else:
                report.results.append(judge(signal, value, thresholds[signal.check]))
        reports.append(report)
    reports.sort(key=InstanceReport.sort_key)
    return FleetReport(reports, at, window_s, client.requests, client.url, [q for _, q in queries])


def render_fleet(report: FleetReport, fmt: str = "table", limit: int | None = None) -> str:
    """Worst first; healthy instances are counted, not listed (unless JSON)."""
    if fmt == "json":
        return (
            json.dumps(
                {
                    "at": report.at,
                    "window_s": report.window_s,
                    "prometheus": report.url,
                    "http_requests": report.http_requests,
                    "exit_code": report.exit_code(),
                    "instances": [
                        {
                            "rank": rank,
                            "instance": r.instance,
                            "severity": r.severity.label,
                            "up": r.up,
                            "worst": r.worst.summary if r.worst else None,
                            "problems": [
                                {
                                    "signal": x.signal,
                                    "check": x.check,
                                    "severity": x.severity.label,
                                    "value": x.value,
                                    "threshold": x.threshold,
                                    "summary": x.summary,
                                }
                                for x in sorted(r.results, key=lambda x: (-x.severity, -x.magnitude))
                                if x.severity >= Severity.WARNING
                            ],
                            "not_judged": r.not_judged,
                        }
                        for rank, r in enumerate(report.instances, start=1)
                    ],
                },
                indent=2,
            )
            + "\n"
        )
    from tabulate import tabulate

    rows = []
    shown = [r for r in report.instances if r.severity is not Severity.OK]
    for rank, r in enumerate(shown[:limit] if limit else shown, start=1):
        worst = r.worst
        others = sum(1 for x in r.results if x.severity >= Severity.WARNING) - (1 if worst else 0)
        if worst:
            what = worst.summary + (f" (+{others} more)" if others else "")
            check = worst.check
        elif not r.up:
            what, check = "target down (up == 0): nothing to judge", "-"
        else:
            what, check = "no node_exporter series for any signal", "-"
        rows.append([rank, r.instance, r.severity.label, check, what])
    healthy = len(report.instances) - len(shown)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.at))
    lines = [
        f"netdoctor fleet at {at} ({len(report.instances)} instances, {promql.format_duration(report.window_s)} "
        f"window, {report.http_requests} queries to {report.url})"
    ]
    if rows:
        sep = "pipe" if fmt == "markdown" else "simple"
        lines.append(tabulate(rows, headers=["rank", "instance", "severity", "check", "worst finding"], tablefmt=sep))
    else:
        lines.append("No problem found on any instance.")
    lines.append(f"healthy: {healthy} instance(s)")
    code = report.exit_code()
    lines.append(f"status: {['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'][code]} (exit {code})")
    if shown:
        import shlex

        url, instance = shlex.quote(report.url), shlex.quote(shown[0].instance)
        lines.append(f"next: netdoctor diagnose --prometheus {url} --instance {instance}")
    return "\n".join(lines) + "\n"
