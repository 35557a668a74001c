"""Prometheus history as a View: the same checks, on what node_exporter recorded.

How a diagnosis is fetched (HTTP requests, documented and tested):

- **1 query per batch of metric names** — with the built-in checks, one. It is an
  instant query at `--at` of a plain range selector,
  `{__name__=~"<the names the selected checks need>",instance="<host>"}[<lookback>]`,
  which returns raw samples with their metric names (rate() and max_over_time() would
  drop `__name__`). Rates over `--window`, gauges, and peaks over `--lookback` (a peak
  rate is the highest `--window` rate in the lookback) are computed from those samples
  client-side (`netdoctor.sources.promql`), resets handled as Prometheus does. The
  count does not depend on the number of CPUs or interfaces.
- **+1** `GET /api/v1/status/runtimeinfo` only when the history returned starts later
  than the lookback asks (to tell "beyond retention" from "a new host"), and
- **+1** `GET /api/v1/label/instance/values` only when nothing came back at all (to
  say "unknown instance, did you mean ...").

Only the documented HTTP API is used, so Thanos, Mimir and VictoriaMetrics work too;
runtimeinfo is optional (a 404 is ignored). Every failure becomes a `SourceError` with
one clear line (exit code 3), never a traceback.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netdoctor.errors import SourceError
from netdoctor.sources import promql
from netdoctor.sources.promql import Matcher, Samples
from netdoctor.view import LabelKey, Point, View, label_key

# node_exporter 1.5's default --collector.netstat.fields: other fields are not exported.
NETSTAT_DEFAULT_FIELDS = re.compile(
    r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)"
    r"|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)"
    r"|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)"
    r"|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$"
)

# Metric prefix -> (collector, off by default?) for "why is it missing".
_COLLECTORS: list[tuple[str, str, bool]] = [
    ("node_nf_conntrack_stat_", "conntrack", False),
    ("node_nf_conntrack_", "conntrack", False),
    ("node_softnet_", "softnet", False),
    ("node_softirqs_", "softirqs", True),
    ("node_interrupts_", "interrupts", True),
    ("node_network_speed_bytes", "netclass", False),
    ("node_network_up", "netclass", False),
    ("node_network_carrier_changes", "netclass", False),
    ("node_network_mtu_bytes", "netclass", False),
    ("node_network_info", "netclass", False),
    ("node_network_", "netdev", False),
    ("node_sockstat_", "sockstat", False),
    ("node_memory_", "meminfo", False),
    ("node_cpu_", "cpu", False),
    ("node_tcp_connection_states", "tcpstat", True),
    ("node_ethtool_", "ethtool", True),
]
# Per-NIC error counters netdoctor reads from /sys/class/net/*/statistics on a live host;
# node_exporter does not export them (its ethtool collector exports driver counters instead).
_SYSFS_ONLY = re.compile(r"^node_network_(receive|transmit)_\w+_errors_total$")


def why_collector_missing(metric: str) -> str:
    """Name what node_exporter would need to export `metric` (never "it is zero")."""
    if metric.startswith("netdoctor_"):
        return f"{metric} is a netdoctor live/capture series; node_exporter only has the summed node_* form"
    if metric.startswith("node_netstat_"):
        field_name = metric[len("node_netstat_") :]
        if not NETSTAT_DEFAULT_FIELDS.match(field_name):
            short = field_name.split("_", 1)[-1]
            return (
                f"{metric} is not in Prometheus: the netstat collector's default --collector.netstat.fields "
                f"omits {short}; add it to that regex on node_exporter"
            )
        return f"{metric} is not in Prometheus: is node_exporter's netstat collector enabled (--collector.netstat)?"
    if _SYSFS_ONLY.match(metric):
        return (
            f"{metric} is read from /sys/class/net/*/statistics by netdoctor's live source; node_exporter does "
            "not export it (its ethtool collector, off by default, exports driver counters as node_ethtool_*)"
        )
    for prefix, collector, off_by_default in _COLLECTORS:
        if metric.startswith(prefix):
            hint = f"enable --collector.{collector} on node_exporter"
            if collector == "conntrack":
                hint += " (and nf_conntrack must be loaded on the host)"
            elif not off_by_default:
                hint = f"is node_exporter's {collector} collector enabled (--collector.{collector})?"
            return f"{metric} is not in Prometheus: {hint}"
    return f"{metric} is not in Prometheus for this instance"


@dataclass
class Auth:
    """HTTP options for any Prometheus-compatible API (Prometheus, Thanos, Mimir, VictoriaMetrics)."""

    bearer_token_file: str | None = None
    basic_auth: str | None = None  # "USER:PASSWORD-FILE"
    ca_file: str | None = None
    insecure_skip_verify: bool = False


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise SourceError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _api_error_text(exc: Exception) -> tuple[int | None, str]:
    """(HTTP status, Prometheus's "error" text) from a PrometheusApiClientException."""
    text = str(exc)
    status_match = re.search(r"HTTP Status Code (\d+)", text)
    status = int(status_match.group(1)) if status_match else None
    body = re.search(r'"error"\s*:\s*"((?:[^"\\]|\\.)*)"', text)
    detail = body.group(1).encode().decode("unicode_escape", "replace") if body else text[:300]
    return status, detail


class PrometheusClient:
    """prometheus-api-client behind one `query` call that turns every failure into SourceError.

    `requests` counts HTTP requests made (for tests and the documented query budget).
    """

    def __init__(self, url: str, timeout_s: float = 30.0, auth: Auth | None = None) -> None:
        if not re.match(r"^https?://[^/]+", url or ""):
            raise SourceError(f"--prometheus {url!r}: expected http://HOST:PORT or https://HOST:PORT[/path]")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.auth = auth or Auth()
        self.requests = 0
        self._connect: Any = None

    def _client(self) -> Any:
        if self._connect is not None:
            return self._connect
        import requests
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        session = requests.Session()
        session.hooks["response"].append(self._count)
        headers: dict[str, str] = {}
        basic: tuple[str, str] | None = None
        if self.auth.bearer_token_file:
            headers["Authorization"] = "Bearer " + _read_secret(self.auth.bearer_token_file, "bearer token file")
        if self.auth.basic_auth:
            user, sep, password_file = self.auth.basic_auth.partition(":")
            if not sep or not user or not password_file:
                raise SourceError("--basic-auth expects USER:PASSWORD-FILE")
            basic = (user, _read_secret(password_file, "password file"))
        session.verify = self.auth.ca_file or not self.auth.insecure_skip_verify
        self._connect = PrometheusConnect(
            url=self.url,
            headers=headers or None,
            auth=basic,
            session=session,
            timeout=self.timeout_s,
            # No hidden retries: each request is counted, and "down" must answer fast.
            retry=Retry(total=0, read=False, raise_on_status=False),
        )
        self._connect._session.verify = session.verify
        return self._connect

    def _count(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return response

    def _call(self, what: str, fn: Any) -> Any:
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        where = f"Prometheus at {self.url}"
        timed_out = (
            f"{where} did not answer {what} within {self.timeout_s:g} s (raise --timeout, or shorten --lookback)"
        )
        try:
            return fn()
        except requests.exceptions.SSLError as exc:
            raise SourceError(
                f"TLS error talking to {where}: {exc.__class__.__name__} (use --ca-file, or --insecure-skip-verify)"
            ) from None
        except requests.exceptions.Timeout:
            raise SourceError(timed_out) from None
        except requests.exceptions.ConnectionError as exc:
            if "timed out" in str(exc).lower():
                raise SourceError(timed_out) from None
            reason = "connection refused" if "refused" in str(exc).lower() else exc.__class__.__name__
            raise SourceError(f"cannot reach {where}: {reason} (is it running? check --prometheus)") from None
        except requests.exceptions.RequestException as exc:
            raise SourceError(f"request to {where} failed: {exc.__class__.__name__}: {exc}") from None
        except PrometheusApiClientException as exc:
            status, detail = _api_error_text(exc)
            if status in (401, 403):
                raise SourceError(
                    f"{where} refused the request (HTTP {status}): check --bearer-token-file / --basic-auth"
                ) from None
            if status == 404:
                raise SourceError(
                    f"{where}: {what} not found (HTTP 404): is --prometheus the API's base URL?"
                ) from None
            if status == 503 or "timeout" in detail.lower() or "timed out" in detail.lower():
                raise SourceError(f"{where} gave up on {what}: {detail} (shorten --lookback)") from None
            if "too many samples" in detail:
                raise SourceError(f"{where}: {detail} (shorten --lookback, or --checks fewer checks)") from None
            raise SourceError(f"{where} rejected {what} (HTTP {status}): {detail}") from None
        except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not the API's shape
            raise SourceError(f"{where} did not answer like a Prometheus API ({what}): {exc}") from None

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """Instant query at `at`: the API's "result" list."""
        client = self._client()
        return self._call("the query", lambda: client.custom_query(expr, params={"time": f"{at:.3f}"}))

    def label_values(self, label: str, start: float, end: float) -> list[str]:
        client = self._client()
        params = {"start": f"{start:.3f}", "end": f"{end:.3f}"}
        return self._call("the label values", lambda: client.get_label_values(label, params=params))

    def retention_s(self) -> float | None:
        """Retention from /api/v1/status/runtimeinfo (Prometheus only; None when unknown)."""
        client = self._client()

        def fetch() -> Any:
            response = client._session.get(
                f"{self.url}/api/v1/status/runtimeinfo",
                headers=client.headers,
                auth=client.auth,
                timeout=self.timeout_s,
            )
            return response.json() if response.status_code == 200 else None

        try:
            body = self._call("runtimeinfo", fetch)
        except SourceError:
            return None
        text = str(((body or {}).get("data") or {}).get("storageRetention") or "")
        found = re.match(r"\s*([0-9][0-9a-z]*)", text)
        if not found:
            return None
        try:
            return promql.parse_duration(found.group(1))
        except promql.PromQLInputError:
            return None


def _fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _ago(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


SeriesData = dict[str, dict[LabelKey, Samples]]


class PrometheusView(View):
    """Raw samples of one instance over the lookback; rates and peaks computed client-side."""

    has_history = True
    inventory = None

    def __init__(
        self,
        series: SeriesData,
        *,
        at: float,
        window_s: float,
        lookback_s: float,
        instance: str,
        url: str,
        problems: Sequence[str] = (),
        http_requests: int = 0,
    ) -> None:
        self.series = series
        self.at = at
        self.window_s = window_s
        self.interval_s = window_s
        self.lookback_s = lookback_s
        self.instance = instance
        self.source = f"prometheus {url}, at {_fmt_time(at)}"
        self._problems = list(problems)
        self.http_requests = http_requests
        self.meta: dict[str, Any] = {"hostname": instance, "at": at, "window_s": window_s, "lookback_s": lookback_s}

    # --- which series are "current" at --at ---
    def _fresh(self, metric: str, match: Mapping[str, str]) -> dict[LabelKey, Samples]:
        start = self.at - self.window_s
        out = {}
        for key, samples in self.series.get(metric, {}).items():
            if samples and start < samples[-1][0] <= self.at + 5e-4 and _matches(key, match):
                out[key] = samples
        return out

    @property
    def problems(self) -> list[str]:
        return list(self._problems)

    def has(self, metric: str) -> bool:
        return bool(self._fresh(metric, {}))

    def why_missing(self, metric: str) -> str:
        if self.has(metric):
            return ""
        known = self.series.get(metric)
        if known:
            last = max(samples[-1][0] for samples in known.values() if samples)
            return (
                f"{metric} is stale at {_fmt_time(self.at)}: last sample {_ago(self.at - last)} earlier "
                f"({_fmt_time(last)}), outside the {promql.format_duration(self.window_s)} window "
                "(node_exporter or the host was down, or the series went away)"
            )
        return why_collector_missing(metric)

    def rate(self, metric: str, **match: str) -> list[Point]:
        points = []
        for key, samples in self._fresh(metric, match).items():
            value = promql.window_rate(samples, self.at - self.window_s, self.at)
            if value is not None:
                points.append(Point(dict(key), value))
        return points

    def gauge(self, metric: str, **match: str) -> list[Point]:
        points = []
        for key, samples in self._fresh(metric, match).items():
            last = promql.last_in(samples, self.at - self.window_s, self.at)
            if last is not None:
                points.append(Point(dict(key), last[1]))
        return points

    def history(self, metric: str, key: LabelKey, kind: str) -> list[tuple[float, float]]:
        """(t, value) over the lookback: raw values for a gauge, `--window` rates for a counter."""
        samples = self.series.get(metric, {}).get(key, [])
        start = self.at - self.lookback_s
        if kind == "rate":
            return [(t, v) for t, v in promql.rolling_rates(samples, self.window_s) if start < t <= self.at]
        return [(t, v) for t, v in samples if start < t <= self.at]

    def peak(self, metric: str, *, kind: str = "gauge", **match: str) -> list[Point]:
        points = []
        for key in self.series.get(metric, {}):
            if not _matches(key, match):
                continue
            best = promql.max_point(self.history(metric, key, kind))
            if best is not None:
                points.append(Point(dict(key), best[1]))
        return points


def _matches(key: LabelKey, match: Mapping[str, str]) -> bool:
    if not match:
        return True
    labels = dict(key)
    return all(labels.get(k) == v for k, v in match.items())


@dataclass
class PrometheusSource:
    """One instance's history in Prometheus, read at `at` (default now)."""

    url: str
    instance: str
    at: float | None = None
    window_s: float = 300.0
    lookback_s: float = 3600.0
    selector: Sequence[Matcher] = ()
    timeout_s: float = 30.0
    auth: Auth = field(default_factory=Auth)
    max_selector_chars: int = promql.DEFAULT_MAX_SELECTOR_CHARS

    def __post_init__(self) -> None:
        if not self.instance:
            raise SourceError("--instance is required with --prometheus (or use --fleet)")
        if self.window_s <= 0 or self.lookback_s <= 0:
            raise SourceError("--window and --lookback must be positive")
        self.client = PrometheusClient(self.url, self.timeout_s, self.auth)

    def matchers(self) -> list[Matcher]:
        own = [m for m in self.selector if m.name != "instance"]
        return [Matcher("instance", "=", self.instance), *own]

    def queries(self, needs: Iterable[str]) -> list[str]:
        """The PromQL expressions one diagnosis sends (one per batch of metric names)."""
        span = promql.format_duration(max(self.lookback_s, self.window_s))
        batches = promql.batch_names(needs, self.matchers(), self.max_selector_chars)
        return [f"{promql.selector(self.matchers(), names)}[{span}]" for names in batches]

    def view(self, needs: Iterable[str]) -> PrometheusView:
        # Prometheus keeps milliseconds: round so that "the sample at --at" is inside the window.
        at = round(time.time() if self.at is None else self.at, 3)
        if at > time.time() + 60:
            raise SourceError(f"--at {_fmt_time(at)} is in the future")
        names = sorted(set(needs))
        if not names:
            raise SourceError("the selected checks need no metric: nothing to ask Prometheus")
        series: SeriesData = {}
        for expr in self.queries(names):
            for item in self.client.query(expr, at):
                _add_series(series, item)
        if not series:
            raise SourceError(self._explain_nothing(at))
        problems = self._coverage_problems(series, at)
        fresh_last = max(s[-1][0] for by_key in series.values() for s in by_key.values() if s)
        if fresh_last <= at - self.window_s:
            raise SourceError(
                f"instance {self.instance!r} has no sample in the {promql.format_duration(self.window_s)} before "
                f"{_fmt_time(at)}: last sample at {_fmt_time(fresh_last)} ({_ago(at - fresh_last)} earlier); "
                "node_exporter or the host was down (or not scraped) then — try --at an earlier time"
            )
        return PrometheusView(
            series,
            at=at,
            window_s=self.window_s,
            lookback_s=self.lookback_s,
            instance=self.instance,
            url=self.client.url,
            problems=problems,
            http_requests=self.client.requests,
        )

    def _coverage_problems(self, series: SeriesData, at: float) -> list[str]:
        """A note when the history does not reach back as far as --lookback asks."""
        wanted_start = at - self.lookback_s
        first = min(s[0][0] for by_key in series.values() for s in by_key.values() if s)
        if first <= wanted_start + 2 * max(self.window_s / 4, 60.0):
            return []
        retention = self.client.retention_s()
        lookback = promql.format_duration(self.lookback_s)
        if retention is not None and at - self.lookback_s < time.time() - retention:
            return [
                f"--lookback {lookback} reaches past Prometheus's retention "
                f"({promql.format_duration(retention)}): peaks only cover {_fmt_time(first)} onwards"
            ]
        return [f"history of {self.instance} starts at {_fmt_time(first)}: peaks cover less than --lookback {lookback}"]

    def _explain_nothing(self, at: float) -> str:
        """Why the query came back empty: retention, unknown instance, or not scraped then."""
        start = at - max(self.lookback_s, self.window_s)
        retention = self.client.retention_s()
        if retention is not None and at < time.time() - retention:
            return (
                f"--at {_fmt_time(at)} is older than Prometheus's retention "
                f"({promql.format_duration(retention)}): no history is kept that far back"
            )
        known = [str(v) for v in self.client.label_values("instance", start - 7 * 86400, time.time())]
        if self.instance in known:
            return (
                f"instance {self.instance!r} has no node_exporter series between {_fmt_time(start)} and "
                f"{_fmt_time(at)} (not scraped then, or the selector excludes it): try another --at or --lookback"
            )
        close = difflib.get_close_matches(self.instance, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        listing = ", ".join(sorted(known)[:8]) + (" ..." if len(known) > 8 else "")
        return f"unknown instance {self.instance!r} at Prometheus {self.client.url}" + (
            hint or (f"; known instances: {listing}" if known else "; it has no instance label at all")
        )


def _add_series(series: SeriesData, item: Mapping[str, Any]) -> None:
    labels = dict(item.get("metric") or {})
    name = labels.pop("__name__", None)
    if not name:
        return
    samples: Samples = []
    for t, v in item.get("values") or []:
        try:
            value = float(v)
        except (TypeError, ValueError):
            continue
        if not math.isnan(value):
            samples.append((float(t), value))
    samples.sort()
    if samples:
        series.setdefault(name, {})[label_key(labels)] = samples


def needs_of(specs: Iterable[Any]) -> list[str]:
    """Every metric name the selected checks declare in NEEDS."""
    return sorted({name for spec in specs for name in getattr(spec, "needs", [])})


def dumps_queries(source: PrometheusSource, needs: Iterable[str]) -> str:
    """The queries a diagnosis would send, one per line (for --explain and docs)."""
    return json.dumps(source.queries(needs), indent=2)


# ---- when did each finding start and peak --------------------------------------------

# Evidence names checks derive from two series: (numerator, its kind, denominator, its kind).
DERIVED_RATIOS: dict[str, tuple[str, str, str, str]] = {
    "conntrack_fill_ratio": ("node_nf_conntrack_entries", "gauge", "node_nf_conntrack_entries_limit", "gauge"),
    "tcp_retransmit_ratio": ("node_netstat_Tcp_RetransSegs", "rate", "node_netstat_Tcp_OutSegs", "rate"),
    "receive_error_ratio": ("node_network_receive_errs_total", "rate", "node_network_receive_packets_total", "rate"),
    "transmit_error_ratio": (
        "node_network_transmit_errs_total",
        "rate",
        "node_network_transmit_packets_total",
        "rate",
    ),
    "receive_drop_ratio": ("node_network_receive_drop_total", "rate", "node_network_receive_packets_total", "rate"),
    "transmit_drop_ratio": (
        "node_network_transmit_drop_total",
        "rate",
        "node_network_transmit_packets_total",
        "rate",
    ),
}
_GAUGE_NETSTAT = {"node_netstat_Tcp_CurrEstab"}


def series_kind(metric: str) -> str:
    """Whether a metric is a counter ("rate"): *_total, netstat and conntrack stat fields; else "gauge"."""
    if metric.endswith("_total") or metric.startswith("node_nf_conntrack_stat_"):
        return "rate"
    if metric.startswith("node_netstat_") and metric not in _GAUGE_NETSTAT:
        return "rate"
    return "gauge"


def _candidates(view: PrometheusView, metric: str, labels: Mapping[str, str]) -> list[LabelKey]:
    keys = list(view.series.get(metric, {}))
    out = []
    for key in keys:
        have = dict(key)
        if all(have.get(k) == v for k, v in labels.items() if k in have):
            out.append(key)
    return out


def _pick(view: PrometheusView, metric: str, labels: Mapping[str, str], kind: str) -> list[tuple[float, float]]:
    """The history of the matching series with the highest peak (a CPU, a device...)."""
    best: list[tuple[float, float]] = []
    best_peak = -math.inf
    for key in _candidates(view, metric, labels):
        points = view.history(metric, key, kind)
        top = promql.max_point(points)
        if top is not None and top[1] > best_peak:
            best, best_peak = points, top[1]
    return best


def key_history(view: PrometheusView, finding: Any) -> tuple[list[tuple[float, float]], float | None, str]:
    """(history, threshold in its units, series description) of a finding's first measurable evidence."""
    for item in finding.evidence:
        labels = dict(item.labels)
        if item.metric in DERIVED_RATIOS:
            num, num_kind, den, den_kind = DERIVED_RATIOS[item.metric]
            top = _pick(view, num, labels, num_kind)
            bottom = dict(_pick(view, den, labels, den_kind))
            ratio = [(t, v / bottom[t]) for t, v in top if bottom.get(t)]
            if ratio:
                return ratio, item.threshold, item.metric
        elif item.metric in view.series:
            kind = series_kind(item.metric)
            points = _pick(view, item.metric, labels, kind)
            if points:
                return points, item.threshold, item.metric
    return [], None, ""


def started_and_peaked(
    points: Sequence[tuple[float, float]], threshold: float | None
) -> tuple[float | None, float | None]:
    """(started_at, peaked_at) of the episode that contains the peak.

    peaked_at is the time of the highest value. started_at walks back from the peak
    while the value stays above the threshold (when the evidence had one), else above
    the baseline plus 10% of the rise (the baseline being the lowest value before the
    peak): the moment this episode began, not the first blip of the lookback.
    """
    top = promql.max_point(points)
    if top is None:
        return None, None
    peak_index = next(i for i, p in enumerate(points) if p == top)
    if threshold is not None and top[1] > threshold:
        level = threshold
    else:
        baseline = min(v for _, v in points[: peak_index + 1])
        if top[1] <= baseline:
            return None, top[0]
        level = baseline + 0.1 * (top[1] - baseline)
    start = peak_index
    while start > 0 and points[start - 1][1] > level:
        start -= 1
    return points[start][0], top[0]


def annotate_history(diagnosis: Any, view: PrometheusView) -> None:
    """Set started_at / peaked_at and the key series' history on each problem, and its peak as evidence."""
    from netdoctor.model import Evidence, Status
    from netdoctor.render.sparkline import PEAK_NOTE

    diagnosis.at = view.at
    for finding in diagnosis.all_findings():
        if finding.status is not Status.PROBLEM:
            continue
        points, threshold, metric = key_history(view, finding)
        if not points:
            continue
        finding.started_at, finding.peaked_at = started_and_peaked(points, threshold)
        finding.history = [(float(t), float(v)) for t, v in points]
        top = promql.max_point(points)
        finding.evidence.append(
            Evidence(
                metric=metric,
                value=top[1] if top else math.nan,
                threshold=threshold,
                window_s=view.lookback_s,
                note=f"{PEAK_NOTE} {promql.format_duration(view.lookback_s)}",
            )
        )


# ---- the `diagnose --prometheus` command line ---------------------------------------


def prometheus_options(command: Any) -> Any:
    """The `diagnose` options of the Prometheus source (kept here so cli.py stays thin)."""
    import click

    options = [
        click.option("--prometheus", "prometheus_url", metavar="URL", help="Diagnose from this Prometheus API."),
        click.option("--instance", metavar="HOST:PORT", help="The node_exporter instance label to diagnose."),
        click.option("--at", "at_text", metavar="TIME", help="RFC 3339, Unix timestamp, or -30m (default now)."),
        click.option("--window", default="5m", show_default=True, help="Rate window (PromQL duration)."),
        click.option("--lookback", default="1h", show_default=True, help="How far back peaks are searched."),
        click.option("--fleet", is_flag=True, help="Rank every instance (see --selector) by its worst problem."),
        click.option("--selector", metavar="'{job=\"node\"}'", help="Label matchers restricting the series."),
        click.option("--timeout", "timeout_s", type=float, default=30.0, show_default=True, help="HTTP timeout, s."),
        click.option("--bearer-token-file", type=click.Path(), help="File holding a bearer token."),
        click.option("--basic-auth", metavar="USER:PASSWORD-FILE", help="HTTP basic auth; password read from file."),
        click.option("--ca-file", type=click.Path(), help="CA bundle to verify the server's certificate."),
        click.option("--insecure-skip-verify", is_flag=True, help="Do not verify the TLS certificate."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run_from_cli(options: Mapping[str, Any], checks: Any, overrides: Mapping[str, Any], fmt: str) -> tuple[str, int]:
    """Build the source from the parsed flags, diagnose one instance or the fleet: (text, exit code)."""
    from netdoctor.errors import UsageError

    try:
        at = promql.parse_time(options.get("at_text"))
        window_s = promql.parse_duration(options.get("window") or "5m")
        lookback_s = promql.parse_duration(options.get("lookback") or "1h")
        matchers = promql.parse_selector(options.get("selector"))
    except promql.PromQLInputError as exc:
        raise UsageError(str(exc)) from None
    timeout_s = float(options.get("timeout_s") or 30.0)
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise UsageError("--timeout must be positive")
    auth = Auth(
        bearer_token_file=options.get("bearer_token_file"),
        basic_auth=options.get("basic_auth"),
        ca_file=options.get("ca_file"),
        insecure_skip_verify=bool(options.get("insecure_skip_verify")),
    )
    url = str(options["prometheus_url"])
    if options.get("fleet"):
        if options.get("instance"):
            raise UsageError("--fleet ranks every instance: drop --instance (or use --selector)")
        from netdoctor.fleet import rank_fleet, render_fleet

        report = rank_fleet(
            PrometheusClient(url, timeout_s, auth),
            at=at,
            window_s=window_s,
            lookback_s=lookback_s,
            selector=matchers,
            check_thresholds={spec.id: spec.thresholds for spec in checks.specs},
            overrides=overrides,
        )
        return render_fleet(report, fmt), report.exit_code()
    if not options.get("instance"):
        raise UsageError("--prometheus needs --instance HOST:PORT (or --fleet)")
    diagnosis = diagnose_instance(
        PrometheusSource(url, str(options["instance"]), at, window_s, lookback_s, matchers, timeout_s, auth),
        checks,
        overrides,
    )
    from netdoctor.render import render

    return render(diagnosis, fmt), diagnosis.exit_code()


def diagnose_instance(source: PrometheusSource, checks: Any, overrides: Mapping[str, Any] | None = None) -> Any:
    """Fetch the history the checks need, run them, and date each finding's start and peak."""
    from netdoctor.engine import diagnose

    view = source.view(needs_of(checks.specs))
    diagnosis = diagnose(view, checks, overrides)
    annotate_history(diagnosis, view)
    return diagnosis
