"""Benchmark: diagnosis from Prometheus history, one host and a 1,000-host fleet.

Why: the issue asks for one-host and 1,000-host fleet diagnosis times against a local
Prometheus. This script writes the history as OpenMetrics, backfills it with
`promtool tsdb create-blocks-from openmetrics`, starts the real `prometheus` on loopback
over that TSDB, and times, in-process (netdoctor imported, one untimed warm-up run):

  one host   `diagnose_instance()`: fetch (1 query) + client-side rates/peaks + all checks
             + started/peaked annotation, for a 16-CPU host with 8 interfaces, 1 h lookback
             (240 samples per series at a 15 s scrape interval)
  fleet      `rank_fleet()` over 1,000 instances (11 server-side aggregated queries), 5 m window

Each through a counting proxy, so the HTTP request count is recorded too. Run:

    python3 bench/prometheus_bench.py                              # prints the section
    python3 bench/prometheus_bench.py --results bench/RESULTS.md   # also rewrites the "Prometheus" section

Prometheus and its temporary TSDB are removed on exit.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import write_section  # noqa: E402

from netdoctor.engine import load_checks  # noqa: E402
from netdoctor.fleet import rank_fleet  # noqa: E402
from netdoctor.sources.prometheus import PrometheusClient, PrometheusSource, diagnose_instance  # noqa: E402
from tests.prom import CountingProxy, History, backfill, healthy_host, prometheus_server  # noqa: E402
from tests.test_fleet import fleet_host  # noqa: E402

TITLE = "## Prometheus"


def build(tmp: Path, hosts: int, now: float) -> tuple[Path, float]:
    history = History(now - 3600, now)
    healthy_host(history, "bench-one:9100", cpus=16)
    for i in range(1, 8):
        d = {"instance": "bench-one:9100", "job": "node", "device": f"eth{i}"}
        for direction in ("receive", "transmit"):
            for kind, rate in (("bytes", 1e6), ("packets", 1000), ("errs", 0), ("drop", 0)):
                history.counter(f"node_network_{direction}_{kind}_total", d, rate)
    fleet = History(now - 20 * 60, now)
    for i in range(hosts):
        sick = {7: "softnet", 500: "conntrack", 900: "retrans"}.get(i, "")
        fleet_host(fleet, f"fleet-{i:04d}:9100", sick=sick)
    history.series.update(fleet.series)
    tsdb = tmp / "data"
    started = time.monotonic()
    backfill(history, tsdb)
    return tsdb, time.monotonic() - started


def timed(fn, rounds: int) -> tuple[list[float], object]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return times, result


def run(args: argparse.Namespace) -> str:
    now = time.time()
    checks = load_checks(use_entry_points=False)
    thresholds = {spec.id: spec.thresholds for spec in checks.specs}
    with tempfile.TemporaryDirectory(prefix="netdoctor-bench-") as tmp:
        tsdb, backfill_s = build(Path(tmp), args.hosts, now)
        with prometheus_server(tsdb) as url, CountingProxy(url) as proxy:
            source = PrometheusSource(proxy.url, "bench-one:9100", at=now)
            before = len(proxy.queries())
            one_times, diagnosis = timed(lambda: diagnose_instance(source, checks), args.rounds)
            one_queries = (len(proxy.queries()) - before) / (args.rounds + 1)
            series = sum(len(v) for v in source.view(list({n for s in checks.specs for n in s.needs})).series.values())

            before = len(proxy.queries())
            fleet_times, report = timed(
                lambda: rank_fleet(PrometheusClient(proxy.url), at=now, check_thresholds=thresholds), args.rounds
            )
            fleet_queries = (len(proxy.queries()) - before) / (args.rounds + 1)
    top = [f"{r.instance} ({r.worst.signal})" for r in report.instances[:3] if r.worst]  # type: ignore[attr-defined]
    day = time.strftime("%Y-%m-%d")
    lines = [
        TITLE,
        "",
        f"Diagnosis from a local Prometheus 2.42 (backfilled with promtool, loopback, through a counting proxy); "
        f"{args.rounds} timed rounds after one warm-up, in-process; {day}, kernel {platform.release()}, "
        f"nproc {os.cpu_count()}, Python {platform.python_version()}.",
        "",
        "Reproduce: `python3 bench/prometheus_bench.py --results bench/RESULTS.md`",
        "",
        "| what is timed | HTTP queries | median ms | min ms |",
        "| --- | --- | --- | --- |",
        f"| one host: `diagnose --prometheus --instance` (16 CPUs, 8 NICs, {series} series, 1 h lookback, "
        f"all checks) | {one_queries:g} | {statistics.median(one_times) * 1000:.0f} | {min(one_times) * 1000:.0f} |",
        f"| fleet: `diagnose --prometheus --fleet`, {args.hosts} instances | {fleet_queries:g} | "
        f"{statistics.median(fleet_times) * 1000:.0f} | {min(fleet_times) * 1000:.0f} |",
        "",
        f"One host exit code {diagnosis.exit_code()} (healthy history, checks needing live inventories cannot "  # type: ignore[attr-defined]
        f"judge). Fleet top 3: {', '.join(top)}. Backfill of the history took {backfill_s:.1f} s (not timed above). "
        "The query counts do not grow with CPUs, interfaces or hosts: 1 query per diagnosis, 11 per fleet ranking.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--results", type=Path, help="rewrite this file's 'Prometheus' section")
    args = parser.parse_args()
    section = run(args)
    print(section)
    if args.results:
        write_section(args.results, section, TITLE)


if __name__ == "__main__":
    main()
