"""Listen queue overflows: connections refused because an accept queue was full.

When an application does not accept() fast enough, its listener's accept queue fills
and the kernel drops the final ACK of new handshakes (ListenOverflows; ListenDrops
counts those plus every other drop at the listener). Clients see SYN retransmits and
1 s / 3 s connect stalls, so this is a cause of TCP retransmits.

Thresholds (all overridable):
- `warn_per_s` = 1.0 — ListenOverflows or ListenDrops rate above 1/s is a warning
  [netdata health.d/tcp_listen.conf: `warn: $this > 1`].
- `crit_per_s` = 5.0 — above 5/s is critical [netdata tcp_listen.conf: `crit: $this > 5`].
- `full_queue_ratio` = 1.0 — a listener whose accept queue (rx_queue of a LISTEN socket)
  is at least this share of its backlog is named as full: the kernel drops once the queue
  exceeds the backlog (sk_acceptq_is_full), so at 100% the next connection is refused.
  /proc/net/tcp does not hold the backlog (its tx_queue column is 0 for a listener; `ss`
  gets Send-Q from netlink), so the live source asks sock_diag for each listener's limit
  (`inventory.listen_backlogs`); where that is unknown the backlog is bounded by
  net.core.somaxconn instead: a queue at somaxconn is full whatever the app asked for.
  Listeners with a shorter non-empty queue are "backed up": named, with confidence 0.7,
  only while the overflow counters fire (the likely culprits; their limit is unknown).
- `min_backlog` = 4096 — the smallest backlog the fix proposes: the fix is
  max(min_backlog, 2 x the current backlog) for the application's listen() backlog and,
  when lower, net.core.somaxconn (the effective backlog is the smaller of the two). The
  current backlog is tx_queue when known, else the queue length (a full queue holds
  backlog + 1).
  4096 is the kernel's own somaxconn default since 5.4.

Listener detail needs the socket inventory (live host, capture); on Prometheus the
counters are judged alone and the finding says the listener could not be named.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from netdoctor.checks._common import magnitude, settings

from netdoctor.causes import LISTEN_OVERFLOW
from netdoctor.model import Entity, EntityKind, Evidence, Finding, FixSuggestion, Severity
from netdoctor.sources.parsers.sockets import Socket
from netdoctor.view import View

ID = "listen_queue"
TITLE = "Listen queue overflows (accept queue full)"
OVERFLOWS = "node_netstat_TcpExt_ListenOverflows"
DROPS = "node_netstat_TcpExt_ListenDrops"
NEEDS = [OVERFLOWS, DROPS]
INVENTORY = ["sockets", "sysctls"]
THRESHOLDS: dict[str, Any] = {
    "warn_per_s": 1.0,
    "crit_per_s": 5.0,
    "full_queue_ratio": 1.0,
    "min_backlog": 4096,
}


def _rate(view: View, metric: str) -> tuple[float | None, str]:
    """The worst per-second rate of a counter over the window, or None and why not."""
    if not view.has(metric):
        return None, view.why_missing(metric)
    points = view.peak(metric, kind="rate")
    if not points:
        return None, f"{metric} has no earlier sample to take a rate from"
    value = sum(p.value for p in points)
    if not math.isfinite(value) or value < 0:
        return None, f"{metric} rate is not a usable number ({value})"
    return value, ""


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _owner(view: View, inode: int) -> str | None:
    owners = view.inventory.socket_owners if view.inventory else {}
    owner = owners.get(inode)
    return f"{owner[1]} (pid {owner[0]})" if owner else None


def _backlog_fix(view: View, current_backlog: int, min_backlog: int, listener: str = "") -> FixSuggestion:
    somaxconn = view.inventory.sysctl_int("net.core.somaxconn") if view.inventory else None
    target = max(int(min_backlog), 2 * current_backlog)
    where = f" of {listener}" if listener else ""
    summary = f"raise the application's listen() backlog{where} to {target}"
    params: dict[str, Any] = {"backlog": target, "listener": listener}
    command = ""
    if somaxconn is None or somaxconn < target:
        summary += (
            f" and net.core.somaxconn (now {somaxconn if somaxconn is not None else 'unknown'}) to {target}"
        )
        params["somaxconn"] = target
        command = f"sysctl -w net.core.somaxconn={target}"
    else:
        summary += f" (net.core.somaxconn is already {somaxconn})"
    return FixSuggestion("backlog", summary + "; both cap the accept queue", command, params)


def _backlog(view: View, sock: Socket) -> int:
    """The listener's accept-queue limit: sock_diag's answer (live, captures), else /proc's 0 = unknown."""
    if sock.tx_queue > 0:
        return sock.tx_queue
    return view.inventory.listen_backlogs.get(sock.inode, 0) if view.inventory else 0


def _listeners(view: View, ratio: float) -> tuple[list[Socket], list[Socket]]:
    """(full, backed up) listeners, largest queue first; see `full_queue_ratio`."""
    sockets = view.inventory.sockets if view.inventory else None
    if sockets is None:
        return [], []
    somaxconn = view.inventory.sysctl_int("net.core.somaxconn") if view.inventory else None
    full, backed_up = [], []
    for sock in sorted(sockets.listeners(), key=lambda s: (-s.rx_queue, s.local_port)):
        if sock.rx_queue <= 0:
            continue
        known = _backlog(view, sock)
        limit = known if known > 0 else somaxconn
        if limit is not None and limit > 0 and sock.rx_queue >= ratio * limit:
            full.append(sock)
        else:
            backed_up.append(sock)
    return full, backed_up


def _listener_finding(
    view: View,
    sock: Socket,
    severity: Severity,
    full: bool,
    evidence: list[Evidence],
    min_backlog: int,
    rate_magnitude: float,
) -> Finding:
    listener = _endpoint(sock.local_ip, sock.local_port)
    owner = _owner(view, sock.inode) or "owner unknown"
    limit = _backlog(view, sock)
    backlog = f"backlog {limit}" if limit > 0 else "backlog unknown: not in /proc/net/tcp"
    state = "is full" if full else "is backed up while listen overflows occur"
    return Finding(
        check=ID,
        severity=severity,
        summary=(
            f"accept queue of {listener} ({owner}) {state}: {sock.rx_queue} connections waiting"
            f" ({backlog}); the application is not accepting fast enough"
        ),
        entity=Entity(EntityKind.LISTENER, listener),
        confidence=1.0 if full else 0.7,
        magnitude=max(sock.rx_queue / limit if limit > 0 else 1.0, rate_magnitude),
        evidence=[
            Evidence("accept_queue", sock.rx_queue, {"listener": listener}, float(limit) or None),
            *evidence,
        ],
        tags=[LISTEN_OVERFLOW],
        fixes=[_backlog_fix(view, limit or sock.rx_queue, min_backlog, listener)],
    )


def run(view: View, thresholds: Mapping[str, Any]) -> list[Finding]:
    thresholds = settings(THRESHOLDS, thresholds)
    warn, crit = float(thresholds["warn_per_s"]), float(thresholds["crit_per_s"])
    min_backlog = int(thresholds["min_backlog"])
    rates: dict[str, float] = {}
    not_judged: list[str] = []
    for metric in (OVERFLOWS, DROPS):
        value, why = _rate(view, metric)
        if value is None:
            not_judged.append(f"{metric.rsplit('_', 1)[-1]}: {why}")
        else:
            rates[metric] = value
    inventory_why = ""
    if view.inventory is None:
        inventory_why = "no socket inventory on this source (node_exporter has no per-listener queues)"
    elif view.inventory.sockets is None:
        inventory_why = view.inventory.missing.get("sockets", "socket table not read")
    if not rates and inventory_why:
        return [Finding.cannot_judge(ID, "; ".join([*not_judged, inventory_why]))]
    full, backed_up = _listeners(view, float(thresholds["full_queue_ratio"]))

    evidence = [Evidence(m, v, threshold=warn, unit="/s", window_s=view.interval_s) for m, v in rates.items()]
    worst = max(rates.values(), default=0.0)
    overflowing = worst > warn
    severity = Severity.CRITICAL if worst > crit else Severity.WARNING
    rate_magnitude = magnitude(worst, warn) if overflowing else 1.0
    findings: list[Finding] = [
        _listener_finding(view, sock, severity, True, evidence, min_backlog, rate_magnitude) for sock in full
    ]
    if overflowing:
        findings += [
            _listener_finding(view, sock, severity, False, evidence, min_backlog, rate_magnitude)
            for sock in backed_up[:3]
        ]
    if overflowing and not findings:
        which = inventory_why or "no listener has connections waiting right now"
        findings.append(
            Finding(
                check=ID,
                severity=severity,
                summary=f"listen queue overflows at {worst:.1f}/s (> {warn:g}/s); listener: {which}",
                magnitude=rate_magnitude,
                evidence=evidence,
                tags=[LISTEN_OVERFLOW],
                fixes=[_backlog_fix(view, 0, min_backlog)],
            )
        )
    if findings:
        return findings
    if not rates:  # a snapshot of the queues alone cannot say that no connection was dropped
        seen = f"{len(backed_up)} listeners with connections waiting, none full" if not inventory_why else ""
        return [Finding.cannot_judge(ID, "; ".join([*not_judged, *([seen] if seen else [])]))]
    parts = [f"{m.rsplit('_', 1)[-1]} {v:.2f}/s" for m, v in rates.items()]
    if view.inventory is not None and view.inventory.sockets is not None:
        waiting = f", {len(backed_up)} with connections waiting" if backed_up else ""
        parts.append(
            f"no full accept queue among {len(view.inventory.sockets.listeners())} listeners{waiting}"
        )
    summary = "no listen queue overflow: " + ", ".join(parts)
    gaps = not_judged + ([f"listeners: {inventory_why}"] if inventory_why else [])
    if gaps:
        summary += "; not judged: " + "; ".join(gaps)
    return [Finding.healthy(ID, summary, evidence)]
