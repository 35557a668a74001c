"""The real kernel: make each incident in network namespaces and diagnose it while it happens.

Each test builds its namespaces (tests/scenarios.py), runs `python -m netdoctor diagnose
--format json --interval 2` *inside* the namespace where the problem shows, and asserts
that the right check's finding ranks first (rank "1", or nested under rank 1 when its
cause is the root), that it names the right entity, and that the exit code says WARNING
or CRITICAL. Namespaces and processes are removed after each test, even on failure.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require, require_binary, require_root
from tests.netns import (
    NS_PREFIX,
    Namespace,
    cleanup_stale_namespaces,
    netdoctor_argv,
    netns_pair,
    run_in,
    start_worker,
    workers,
)
from tests.scenarios import (
    ephemeral_ports,
    healthy,
    listen_overflow,
    retransmit_storm,
    socket_buffers,
    timewait_closewait,
)

pytestmark = pytest.mark.real

INTERVAL_S = "2"
Finding = dict[str, Any]


@pytest.fixture(autouse=True)
def _real_kernel() -> None:
    require_root()
    require_binary("ip")
    require_binary("nft")
    require_binary("ss")
    require(_netns_works(), "cannot list network namespaces here (ip netns list failed)")


def _netns_works() -> bool:
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return probe.returncode == 0


def diagnose_in(ns: Namespace) -> tuple[int, dict[str, Any]]:
    """Run netdoctor inside `ns` while the scenario is live; (exit code, parsed JSON)."""
    proc = run_in(ns, netdoctor_argv("diagnose", "--format", "json", "--interval", INTERVAL_S), check=False)
    assert proc.stdout, f"netdoctor printed nothing (exit {proc.returncode}): {proc.stderr}"
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not JSON ({exc}): {proc.stdout[:500]} / {proc.stderr[:500]}") from exc


def walk(findings: list[Finding]) -> Iterator[Finding]:
    for finding in findings:
        yield finding
        yield from walk(finding["explained_by"])


def problems(report: dict[str, Any]) -> list[Finding]:
    return [f for f in walk(report["findings"]) if f["status"] == "problem"]


def outline(report: dict[str, Any]) -> str:
    """The ranked problems in one readable block, for assertion messages."""
    return "\n".join(
        f"{f['rank']} {f['check']} {f['severity']} {f['entity']['kind']}:{f['entity']['name']} {f['summary']}"
        for f in problems(report)
    )


# Checks that read host-wide files even inside a namespace (/proc/stat, /proc/softirqs,
# /proc/interrupts and softnet_stat are per CPU, not per network namespace): their findings
# describe whatever else this machine is doing (other test runs, benchmarks flooding veth
# backlogs) and may legitimately outrank the scenario. Everything else is namespace-scoped.
HOST_WIDE_CHECKS = {"softirq_drops"}


def assert_ranks_first(report: dict[str, Any], check: str, matches: Callable[[Finding], bool]) -> Finding:
    """The finding of `check` satisfying `matches` is rank 1, or nested under rank 1.

    Only host-wide findings (HOST_WIDE_CHECKS, about activity outside the namespace) may
    rank above it; the assertion message shows the whole ranking when that is not so.
    """
    roots = [f for f in report["findings"] if f["status"] == "problem"]
    for finding in problems(report):
        if finding["check"] == check and matches(finding):
            root_label = (finding["rank"] or "").split(".")[0]
            above = [r for r in roots if int(r["rank"]) < int(root_label)]
            outranking = [r for r in above if r["check"] not in HOST_WIDE_CHECKS]
            assert not outranking, f"{check} finding ranked {finding['rank']}, not first:\n{outline(report)}"
            return finding
    raise AssertionError(f"no matching {check} finding:\n{outline(report)}")


def evidence_value(finding: Finding, metric: str) -> float:
    for item in finding["evidence"]:
        if item["metric"] == metric:
            return float(item["value"])
    raise AssertionError(f"no {metric} evidence in {finding['check']}: {finding['evidence']}")


def test_retransmit_storm_ranks_retransmits_first() -> None:
    with retransmit_storm(loss_percent=15) as run:
        code, report = diagnose_in(run.namespace)
    finding = assert_ranks_first(report, "retransmits", lambda f: f["severity"] == "critical")
    ratio = evidence_value(finding, "tcp_retransmit_ratio")
    # 15% random loss of data segments: the sender retransmits roughly that share (more when a
    # retransmit is itself lost), far above the 5% critical line and far below "everything".
    assert 0.05 < ratio < 0.5, ratio
    assert evidence_value(finding, "node_netstat_Tcp_OutSegs") * float(INTERVAL_S) >= 1000
    assert code == 2


def test_ephemeral_ports_names_the_busy_destination_only() -> None:
    with ephemeral_ports(port_range=(40000, 40199), busy=190, fine=5) as run:
        code, report = diagnose_in(run.namespace)
    busy, fine = run.facts["busy_destination"], run.facts["fine_destination"]
    finding = assert_ranks_first(report, "ephemeral_ports", lambda f: f["entity"]["name"].startswith(busy))
    assert finding["entity"]["kind"] == "destination"
    assert finding["severity"] == "critical"  # 190 / 200 = 95% > 90%
    assert evidence_value(finding, "ephemeral_ports_in_use") == 190
    assert run.facts["source"] in json.dumps(finding)
    for other in problems(report):
        assert fine not in json.dumps(other), f"the fine destination {fine} was named:\n{outline(report)}"
    assert code == 2


def test_closewait_names_the_leaking_process_and_timewait_builds_up() -> None:
    with timewait_closewait(closewait=120, timewait=200, max_tw_buckets=256) as run:
        code, report = diagnose_in(run.namespace)
    owner = f"{run.facts['leaky_name']} (pid {run.facts['leaky_pid']})"
    closewait = assert_ranks_first(
        report, "socket_states", lambda f: f["entity"]["kind"] == "process" and owner in f["entity"]["name"]
    )
    assert str(run.facts["closewait"]) in closewait["summary"]
    timewait = [f for f in problems(report) if f["check"] == "socket_states" and "TIME_WAIT" in f["summary"]]
    assert timewait, f"no TIME_WAIT finding:\n{outline(report)}"
    assert "200 of 256" in timewait[0]["summary"]
    assert code in (1, 2)


def test_listen_overflow_names_the_listener_and_its_process() -> None:
    with listen_overflow(backlog=8, connects_per_s=200) as run:
        code, report = diagnose_in(run.namespace)
    finding = assert_ranks_first(
        report, "listen_queue", lambda f: f["entity"]["name"].endswith(f":{run.facts['port']}")
    )
    assert finding["rank"] == "1"
    assert finding["entity"] == {"kind": "listener", "name": run.facts["listener"]}
    assert run.facts["name"] in finding["summary"] and str(run.facts["pid"]) in finding["summary"]
    assert finding["severity"] == "critical"  # ~200 refused handshakes a second, > 5/s
    assert code == 2


def test_udp_receive_buffer_errors_name_the_socket() -> None:
    with socket_buffers(rcvbuf=1024, datagrams_per_s=5000) as run:
        code, report = diagnose_in(run.namespace)
    counters = assert_ranks_first(report, "socket_buffers", lambda f: "RcvbufErrors" in f["summary"])
    assert counters["severity"] == "critical"  # ~5000 datagrams/s dropped, > 100/s
    socket_finding = [
        f for f in problems(report) if f["check"] == "socket_buffers" and f["entity"]["name"] == run.facts["socket"]
    ]
    assert socket_finding, f"the overflowing socket {run.facts['socket']} was not named:\n{outline(report)}"
    assert code == 2


def test_quiet_namespace_has_no_namespace_scoped_problem() -> None:
    """A namespace with a little clean traffic: the checks that see only this namespace stay quiet.

    softirq_drops and nic_* read host-wide files (/proc/stat, softnet_stat, interrupts),
    which reflect whatever else runs on this machine; they are judged by the fixtures.
    """
    with healthy() as run:
        code, report = diagnose_in(run.namespace)
    scoped = {
        "retransmits",
        "conntrack",
        "ephemeral_ports",
        "socket_states",
        "socket_buffers",
        "listen_queue",
    }
    noisy = [f for f in problems(report) if f["check"] in scoped]
    assert not noisy, outline(report)
    judged = {f["check"]: f["status"] for f in walk(report["findings"]) if f["check"] in scoped}
    assert set(judged) == scoped
    assert judged["socket_states"] == "healthy" and judged["ephemeral_ports"] == "healthy"


# --- the namespace machinery itself -----------------------------------------------------------


def test_namespaces_and_workers_are_removed_even_when_the_test_fails() -> None:
    seen: dict[str, Any] = {}
    with pytest.raises(RuntimeError, match="boom"):
        with netns_pair() as pair, workers() as started:
            started.append(start_worker(pair.server, "tests.netns:tcp_server", pair.server.address, 8080, "hold"))
            seen["names"] = (pair.client.name, pair.server.name)
            seen["pid"] = started[0].pid
            raise RuntimeError("boom")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for name in seen["names"]:
        assert name not in listed
    assert not Path(f"/proc/{seen['pid']}").exists()


def test_stale_namespaces_of_a_dead_run_are_cleaned() -> None:
    dead_pid = 4_000_000  # above pid_max's default range: no live process has it
    stale = f"{NS_PREFIX}{dead_pid}-1-c"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in cleanup_stale_namespaces()
        assert stale not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True)
