"""A real Prometheus for tests: history written as OpenMetrics, backfilled with promtool.

`History` builds node_exporter-shaped series (counters from a rate function of time,
gauges from a value function); `prometheus_over(history)` backfills them with
`promtool tsdb create-blocks-from openmetrics`, starts `prometheus` on a free loopback
port over that TSDB (no scrape jobs, so the head stays empty) and always stops it.
`CountingProxy` sits in front of it and records every HTTP request, so tests assert
how many queries a diagnosis costs. `SilentListener` accepts and never answers.
"""

from __future__ import annotations

import math
import socket
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import require_binary, stop_process, wait_until_serving

STEP_S = 15.0
Fn = Callable[[float], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _om_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class History:
    """Series of one or more hosts between `start` and `end`, one sample every `step` s."""

    start: float
    end: float
    step: float = STEP_S
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = field(default_factory=dict)

    def times(self) -> list[float]:
        count = int((self.end - self.start) // self.step) + 1
        return [self.start + i * self.step for i in range(count)]

    def gauge(self, name: str, labels: Mapping[str, str], value: Fn | float, *, until: float | None = None) -> None:
        fn = value if callable(value) else (lambda _t, v=float(value): v)
        points = [(t, fn(t)) for t in self.times() if until is None or t <= until]
        self.series[(name, tuple(sorted(labels.items())))] = [(t, v) for t, v in points if not math.isnan(v)]

    def counter(
        self,
        name: str,
        labels: Mapping[str, str],
        rate: Fn | float,
        *,
        initial: float = 1000.0,
        reset_at: Sequence[float] = (),
        until: float | None = None,
    ) -> None:
        """A counter growing at `rate(t)` per second; it restarts from 0 at each `reset_at`."""
        fn = rate if callable(rate) else (lambda _t, r=float(rate): r)
        value, points, resets = initial, [], sorted(reset_at)
        previous = None
        for t in self.times():
            if until is not None and t > until:
                break
            if previous is not None:
                value += fn(t) * (t - previous)
                if resets and t >= resets[0]:  # restarted just after the previous scrape
                    resets.pop(0)
                    value = fn(t) * (t - previous)
            points.append((t, value))
            previous = t
        self.series[(name, tuple(sorted(labels.items())))] = points

    def write_openmetrics(self, path: Path) -> None:
        with path.open("w") as out:
            for (name, labels), points in sorted(self.series.items()):
                body = ",".join(f'{k}="{_om_escape(v)}"' for k, v in labels)
                head = f"{name}{{{body}}}" if body else name
                for t, v in points:
                    out.write(f"{head} {v!r} {t:.3f}\n")
            out.write("# EOF\n")


def healthy_host(history: History, instance: str, *, cpus: int = 2, job: str = "node") -> None:
    """A quiet, healthy node_exporter host with the default collectors (what checks need)."""
    base = {"instance": instance, "job": job}
    history.gauge("up", base, 1)
    for cpu in range(cpus):
        c = {**base, "cpu": str(cpu)}
        for mode, share in (("user", 0.10), ("system", 0.05), ("softirq", 0.01), ("irq", 0.0), ("idle", 0.84)):
            history.counter("node_cpu_seconds_total", {**c, "mode": mode}, share)
        history.counter("node_softnet_processed_total", c, 500)
        history.counter("node_softnet_dropped_total", c, 0)
        history.counter("node_softnet_times_squeezed_total", c, 0)
    for device, speed in (("eth0", 1.25e9), ("lo", None)):
        d = {**base, "device": device}
        for direction in ("receive", "transmit"):
            history.counter(f"node_network_{direction}_bytes_total", d, 200_000)
            history.counter(f"node_network_{direction}_packets_total", d, 1000)
            for kind in ("errs", "drop", "fifo"):
                history.counter(f"node_network_{direction}_{kind}_total", d, 0)
        history.counter("node_network_receive_frame_total", d, 0)
        history.counter("node_network_transmit_colls_total", d, 0)
        history.counter("node_network_transmit_carrier_total", d, 0)
        if speed:
            history.gauge("node_network_speed_bytes", d, speed)
        history.gauge("node_network_up", d, 1)
        history.gauge("node_network_mtu_bytes", d, 1500)
        history.counter("node_network_carrier_changes_total", d, 0, initial=2)
    history.gauge("node_nf_conntrack_entries", base, 1000)
    history.gauge("node_nf_conntrack_entries_limit", base, 262144)
    for stat in ("found", "invalid", "ignore", "insert", "insert_failed", "drop", "early_drop", "search_restart"):
        history.counter(f"node_nf_conntrack_stat_{stat}", base, 0)
    # Only the fields node_exporter's default --collector.netstat.fields keeps.
    for name, rate in (
        ("Tcp_OutSegs", 2000),
        ("Tcp_InSegs", 2000),
        ("Tcp_RetransSegs", 1),
        ("Tcp_ActiveOpens", 5),
        ("Tcp_PassiveOpens", 5),
        ("TcpExt_TCPTimeouts", 0),
        ("TcpExt_TCPSynRetrans", 0),
        ("TcpExt_ListenOverflows", 0),
        ("TcpExt_ListenDrops", 0),
        ("Udp_InDatagrams", 100),
        ("Udp_RcvbufErrors", 0),
        ("Udp_SndbufErrors", 0),
        ("Udp_InErrors", 0),
        ("Udp6_RcvbufErrors", 0),
        ("Udp6_SndbufErrors", 0),
    ):
        history.counter(f"node_netstat_{name}", base, rate)
    history.gauge("node_netstat_Tcp_CurrEstab", base, 50)
    for name, value in (("TCP_inuse", 60), ("TCP_tw", 100), ("TCP_orphan", 0), ("TCP_alloc", 70), ("UDP_inuse", 5)):
        history.gauge(f"node_sockstat_{name}", base, value)
    history.gauge("node_sockstat_sockets_used", base, 200)
    history.gauge("node_memory_MemTotal_bytes", base, 8 * 2**30)
    history.gauge("node_memory_MemAvailable_bytes", base, 6 * 2**30)


def backfill(history: History, tsdb: Path) -> None:
    promtool = require_binary("promtool")
    source = tsdb.parent / "history.om"
    history.write_openmetrics(source)
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"promtool backfill failed: {done.stderr[-2000:]}")


@contextmanager
def prometheus_server(
    tsdb: Path,
    *,
    retention: str = "30d",
    extra: Sequence[str] = (),
    scrape_targets: Sequence[str] = (),
    scrape_interval: str = "15s",
) -> Iterator[str]:
    """Start the real prometheus on a free loopback port over `tsdb`; yield its base URL.

    With `scrape_targets` (host:port of node_exporters) it scrapes them as job "node".
    """
    binary = require_binary("prometheus")
    config = tsdb.parent / "prometheus.yml"
    scrape = "scrape_configs: []\n"
    if scrape_targets:
        targets = ", ".join(f"'{t}'" for t in scrape_targets)
        scrape = (
            f"scrape_configs:\n  - job_name: node\n    scrape_interval: {scrape_interval}\n"
            f"    scrape_timeout: {scrape_interval}\n    static_configs:\n      - targets: [{targets}]\n"
        )
    config.write_text("global:\n  scrape_interval: 15s\n" + scrape)
    port = free_port()
    log = (tsdb.parent / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tsdb}",
            f"--storage.tsdb.retention.time={retention}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, f"{url}/-/ready", 60, lambda: (tsdb.parent / "prometheus.log").read_text())
        yield url
    finally:
        stop_process(proc, 10)
        log.close()


@contextmanager
def prometheus_over(history: History, *, retention: str = "30d") -> Iterator[str]:
    """Backfill `history` into a fresh TSDB and serve it; yield the base URL."""
    with tempfile.TemporaryDirectory(prefix="netdoctor-prom-") as tmp:
        tsdb = Path(tmp) / "data"
        backfill(history, tsdb)
        with prometheus_server(tsdb, retention=retention) as url:
            yield url


class CountingProxy:
    """A loopback HTTP proxy in front of `upstream` that records every request path+query."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.requests.append(f"{self.command} {self.path}")
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command)
                for name in ("Content-Type", "Authorization"):
                    if self.headers.get(name):
                        request.add_header(name, self.headers[name])
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        status, payload, ctype = response.status, response.read(), response.headers["Content-Type"]
                except urllib.error.HTTPError as exc:
                    status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "text/plain")
                self.send_response(status)
                self.send_header("Content-Type", ctype or "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _forward
            do_POST = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def queries(self, path: str = "/api/v1/") -> list[str]:
        return [r for r in self.requests if path in r]

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentListener:
    """Accepts TCP connections and never answers: a Prometheus that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
