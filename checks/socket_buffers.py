"""Socket buffers overflowing: data the kernel received and then threw away.

When an application reads too slowly, its socket receive buffer (SO_RCVBUF, capped by
net.core.rmem_max) fills and the kernel drops what arrives next: UDP datagrams count
in RcvbufErrors (lost for good), TCP segments in TCPRcvQDrop / RcvPruned /
TCPBacklogDrop (the peer retransmits them). PruneCalled counts the kernel collapsing a
full TCP queue to make room: no loss yet, the step before it.

Thresholds (all overridable):
- `udp_warn_per_s` = 10.0 — Udp/Udp6 RcvbufErrors or SndbufErrors above 10/s is a
  warning [netdata health.d/udp_errors.conf: `warn: $this > 10`];
  `udp_crit_per_s` = 100.0 — above 100/s critical [netdoctor default, 10x the warning].
- `tcp_warn_per_s` = 0.0 — any TCPRcvQDrop, PruneCalled, RcvPruned or TCPBacklogDrop
  over the window is a warning: each is a receive queue that overflowed for the whole
  window's worth of traffic [netdoctor default; pmie and xsos flag any]. PruneCalled
  alone is judged with confidence 0.6, as it means pressure, not yet loss.
- `rmem_floor` = 8388608 — the fix proposes net.core.rmem_max = max(2 x current,
  8 MiB): doubling the 208 KiB default is too small a step for a bursty receiver, and
  8 MiB is what high-rate UDP receivers (e.g. quic-go's 7.5 MB) ask for.
- `top_sockets` = 5 — UDP sockets named at most: those with drops > 0 and data still
  queued (rx_queue > 0) in the socket inventory, by local ip:port and owner if known.
  A socket's drops count since it was opened, so sockets are named only while the UDP
  RcvbufErrors counters rise (confidence 0.9), or with confidence 0.5 when those
  counters could not be read; old drops on a quiet host are not a finding.

A counter the source lacks (node_exporter's default netstat field list omits
TCPBacklogDrop, PruneCalled, RcvPruned and TCPRcvQDrop) is listed as not judged,
never read as zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netdoctor.checks._common import magnitude, settings, usable

from netdoctor.causes import SOCKET_BUFFER_OVERFLOW
from netdoctor.model import Entity, EntityKind, Evidence, Finding, FixSuggestion, Severity
from netdoctor.view import View

ID = "socket_buffers"
TITLE = "Socket buffer overflows (receive/send buffer errors)"
UDP_COUNTERS = [
    "node_netstat_Udp_RcvbufErrors",
    "node_netstat_Udp6_RcvbufErrors",
    "node_netstat_Udp_SndbufErrors",
    "node_netstat_Udp6_SndbufErrors",
]
TCP_COUNTERS = [
    "node_netstat_TcpExt_TCPRcvQDrop",
    "node_netstat_TcpExt_RcvPruned",
    "node_netstat_TcpExt_TCPBacklogDrop",
    "node_netstat_TcpExt_PruneCalled",
]
NEEDS = UDP_COUNTERS + TCP_COUNTERS
INVENTORY = ["sockets", "sysctls"]
THRESHOLDS: dict[str, Any] = {
    "udp_warn_per_s": 10.0,
    "udp_crit_per_s": 100.0,
    "tcp_warn_per_s": 0.0,
    "rmem_floor": 8388608,
    "top_sockets": 5,
}
WHAT = {
    "RcvbufErrors": "datagrams dropped: receive buffer full",
    "SndbufErrors": "datagrams not sent: send buffer full",
    "TCPRcvQDrop": "segments dropped: receive queue full",
    "RcvPruned": "segments dropped after pruning the receive queue",
    "TCPBacklogDrop": "segments dropped: socket backlog full while the app held the socket",
    "PruneCalled": "receive queue pruned under memory pressure (no loss yet)",
}


def _short(metric: str) -> str:
    return metric.removeprefix("node_netstat_")


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _rate(view: View, metric: str) -> tuple[float | None, str]:
    """The worst per-second rate of a counter over the window, or None and why not."""
    if not view.has(metric):
        return None, view.why_missing(metric)
    values = [p.value for p in view.peak(metric, kind="rate")]
    if not values:
        return None, "no earlier sample to take a rate from"
    if not all(usable(v) for v in values):
        return None, f"rate is not a usable number ({values[0]})"
    return sum(values), ""


def _rmem_fix(view: View, floor: int) -> FixSuggestion:
    current = view.inventory.sysctl_int("net.core.rmem_max") if view.inventory else None
    target = max(2 * current, floor) if current and current > 0 else floor
    return FixSuggestion(
        fix_id="rmem",
        summary=(
            f"raise net.core.rmem_max (now {current if current else 'unknown'}) to {target} and let the"
            f" application ask for it with setsockopt(SO_RCVBUF, {target}), or have it read faster"
        ),
        command=f"sysctl -w net.core.rmem_max={target}",
        params={"rmem_max": target, "so_rcvbuf": target},
    )


def _socket_findings(view: View, t: Mapping[str, Any], udp_dropping: bool) -> list[Finding]:
    """UDP sockets that dropped and still have data queued: the slow readers, by name."""
    sockets = view.inventory.sockets if view.inventory else None
    if sockets is None:
        return []
    owners = view.inventory.socket_owners if view.inventory else {}
    suspects = [s for s in sockets if s.proto.startswith("udp") and s.drops > 0 and s.rx_queue > 0]
    suspects.sort(key=lambda s: (-s.drops, -s.rx_queue))
    findings = []
    for sock in suspects[: int(t["top_sockets"])]:
        local = _endpoint(sock.local_ip, sock.local_port)
        owner = owners.get(sock.inode)
        who = f"{owner[1]} (pid {owner[0]})" if owner else "owner unknown"
        labels = {"socket": local, "proto": sock.proto}
        findings.append(
            Finding(
                ID,
                Severity.WARNING,
                f"UDP socket {local} ({who}) has dropped {sock.drops} datagrams since it was opened and has"
                f" {sock.rx_queue} bytes waiting: its reader is too slow or its SO_RCVBUF too small",
                entity=Entity(EntityKind.SOCKET, local),
                confidence=0.9 if udp_dropping else 0.5,
                evidence=[
                    Evidence("socket_drops", sock.drops, labels, note="drops since the socket opened"),
                    Evidence("socket_rx_queue", sock.rx_queue, labels, unit=" bytes"),
                ],
                tags=[SOCKET_BUFFER_OVERFLOW],
                fixes=[_rmem_fix(view, int(t["rmem_floor"]))],
            )
        )
    return findings


def run(view: View, thresholds: Mapping[str, Any]) -> list[Finding]:
    t = settings(THRESHOLDS, thresholds)
    udp_warn, udp_crit, tcp_warn = (
        float(t[k]) for k in ("udp_warn_per_s", "udp_crit_per_s", "tcp_warn_per_s")
    )
    rates: dict[str, float] = {}
    not_judged: list[str] = []
    for metric in NEEDS:
        value, why = _rate(view, metric)
        if value is None:
            not_judged.append(f"{_short(metric)} ({why})")
        else:
            rates[metric] = value
    findings: list[Finding] = []
    for metric, value in rates.items():
        is_udp = metric in UDP_COUNTERS
        warn = udp_warn if is_udp else tcp_warn
        if value <= warn:
            continue
        field = metric.rsplit("_", 1)[-1]
        severity = Severity.CRITICAL if is_udp and value > udp_crit else Severity.WARNING
        findings.append(
            Finding(
                ID,
                severity,
                f"{_short(metric)} at {value:.2f}/s (> {warn:g}/s): {WHAT[field]}",
                confidence=0.6 if field == "PruneCalled" else 1.0,
                magnitude=magnitude(value, warn),
                evidence=[Evidence(metric, value, threshold=warn, unit="/s", window_s=view.interval_s)],
                tags=[SOCKET_BUFFER_OVERFLOW],
                fixes=[] if field == "SndbufErrors" else [_rmem_fix(view, int(t["rmem_floor"]))],
            )
        )
    # A socket's drops count since it was opened: named only while UDP receive errors rise now, or when
    # those counters could not be read (then the inventory is the only sign, judged with low confidence).
    udp_rcv = [rates[m] for m in UDP_COUNTERS if "Rcvbuf" in m and m in rates]
    udp_dropping = any(rate > 0 for rate in udp_rcv)
    if udp_dropping or not udp_rcv:
        findings += _socket_findings(view, t, udp_dropping)
    if findings:
        return findings
    if not rates:
        return [Finding.cannot_judge(ID, "; ".join(not_judged))]
    summary = "no socket buffer overflow: " + ", ".join(f"{_short(m)} {v:.2f}/s" for m, v in rates.items())
    if not_judged:
        summary += "; not judged: " + "; ".join(not_judged)
    evidence = [Evidence(m, v, unit="/s", window_s=view.interval_s) for m, v in rates.items()]
    return [Finding.healthy(ID, summary, evidence)]
