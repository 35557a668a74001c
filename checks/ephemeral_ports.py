"""Ephemeral ports running out toward one destination.

The kernel may reuse a local port toward *different* destinations (the 4-tuple must be
unique, not the port), so exhaustion is per (local address, remote address, remote
port): a client that opens many short connections to one backend runs out of ports for
that backend while every other destination is fine. connect() then fails with
EADDRNOTAVAIL, which no kernel counter records. Each local address is kept as the
socket table gives it (a wildcard-bound local address is its own tuple).

The usable range is `ip_local_port_range` (low..high inclusive) minus the ports of
`ip_local_reserved_ports` inside it: 28,232 with the kernel default 32768-60999.

Thresholds (all overridable):
- `warn_ratio` = 0.70 — connections of one destination above 70% of the usable range
  is a warning; `crit_ratio` = 0.90 — above 90% is critical [THRESHOLDS.md: no anchor
  checks this; netdoctor default].
- `timewait_share` = 0.5 — when at least half of a destination's ports sit in TIME_WAIT,
  the fix also proposes net.ipv4.tcp_tw_reuse=1 (reuse TIME_WAIT ports for new outgoing
  connections when timestamps make it safe) [netdoctor default].
- `widen_to` = "1024 65535" — the range the fix proposes; listening ports that would fall
  into the new range are proposed as reserved ports so a restart of their service can
  still bind them.

Needs the socket inventory (live host, capture): node_exporter has no per-destination
socket data, so on Prometheus this check cannot judge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from netdoctor.checks._common import settings

from netdoctor.causes import PORTS_EXHAUSTED
from netdoctor.errors import ParseError
from netdoctor.model import Entity, EntityKind, Evidence, Finding, FixSuggestion, Severity
from netdoctor.sources.inventory import DEFAULT_PORT_RANGE
from netdoctor.view import View

ID = "ephemeral_ports"
TITLE = "Ephemeral ports exhausted toward a destination"
# Optional context: connects that failed (SYN_SENT -> CLOSED) and TIME_WAIT sockets the kernel refused.
CONNECT_FAILURE_COUNTERS = ["node_netstat_Tcp_AttemptFails", "node_netstat_TcpExt_TCPTimeWaitOverflow"]
NEEDS = list(CONNECT_FAILURE_COUNTERS)
INVENTORY = ["sockets", "sysctls"]
THRESHOLDS: dict[str, Any] = {
    "warn_ratio": 0.70,
    "crit_ratio": 0.90,
    "timewait_share": 0.5,
    "widen_to": "1024 65535",
}


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _port_range(view: View) -> tuple[tuple[int, int], frozenset[int], str]:
    """The configured range and reserved ports, with a note when something had to be assumed."""
    inventory = view.inventory
    assert inventory is not None
    notes = []
    try:
        configured = inventory.port_range()
    except ParseError as exc:
        configured = None
        notes.append(f"ip_local_port_range unparsable ({exc}); kernel default assumed")
    else:
        if configured is None:
            why = inventory.missing.get("net.ipv4.ip_local_port_range", "not read")
            notes.append(f"ip_local_port_range {why}; kernel default assumed")
    try:
        reserved = inventory.reserved_ports()
    except ParseError as exc:
        reserved = frozenset()
        notes.append(f"ip_local_reserved_ports unparsable ({exc}); none assumed")
    return configured or DEFAULT_PORT_RANGE, reserved, "; ".join(notes)


def _connect_failures(view: View) -> list[Evidence]:
    """Rates of the counters that show failing connects, where the source has them (context only)."""
    out = []
    for metric in CONNECT_FAILURE_COUNTERS:
        value = view.rate_sum(metric) if view.has(metric) else None
        if value is not None and math.isfinite(value):
            out.append(Evidence(metric, value, unit="/s", window_s=view.interval_s))
    return out


def _ports_fix(
    view: View, low: int, high: int, tw_share: float, thresholds: Mapping[str, Any]
) -> FixSuggestion:
    wide_low, wide_high = (int(p) for p in str(thresholds["widen_to"]).split()[:2])
    new_low, new_high = min(low, wide_low), max(high, wide_high)
    sockets = view.inventory.sockets if view.inventory else None
    listening = {s.local_port for s in sockets.listeners()} if sockets is not None else set()
    newly_covered = sorted(p for p in listening if new_low <= p <= new_high and not low <= p <= high)
    params: dict[str, Any] = {"port_range": [new_low, new_high]}
    commands = []
    if (new_low, new_high) != (low, high):
        commands.append(f'sysctl -w net.ipv4.ip_local_port_range="{new_low} {new_high}"')
    if newly_covered:
        params["reserved_ports"] = newly_covered
        commands.append(f"sysctl -w net.ipv4.ip_local_reserved_ports={','.join(map(str, newly_covered))}")
    tw_reuse = view.inventory.sysctl_int("net.ipv4.tcp_tw_reuse") if view.inventory else None
    if tw_share >= float(thresholds["timewait_share"]) and tw_reuse != 1:
        params["tcp_tw_reuse"] = 1
        commands.append("sysctl -w net.ipv4.tcp_tw_reuse=1")
    summary = f"widen ip_local_port_range to {new_low}-{new_high}"
    if "tcp_tw_reuse" in params:
        summary += f" and set tcp_tw_reuse=1 ({tw_share:.0%} of the ports are in TIME_WAIT)"
    if not commands:
        summary = "range already at its widest: add source addresses or pool/keep-alive connections"
    return FixSuggestion("ports", summary, " && ".join(commands), params)


def run(view: View, thresholds: Mapping[str, Any]) -> list[Finding]:
    thresholds = settings(THRESHOLDS, thresholds)
    if view.inventory is None:
        return [
            Finding.cannot_judge(
                ID, "no socket inventory on this source (node_exporter has no per-destination socket data)"
            )
        ]
    sockets = view.inventory.sockets
    if sockets is None:
        return [Finding.cannot_judge(ID, view.inventory.missing.get("sockets", "socket table not read"))]
    (low, high), reserved, range_note = _port_range(view)
    usable = high - low + 1 - sum(1 for port in reserved if low <= port <= high)
    range_evidence = Evidence(
        "ephemeral_ports_usable", float(usable), {"range": f"{low}-{high}"}, note=range_note or "usable ports"
    )
    if usable <= 0:
        return [
            Finding(
                check=ID,
                severity=Severity.CRITICAL,
                summary=f"no usable ephemeral port: {low}-{high} is empty or entirely reserved",
                magnitude=10.0,
                evidence=[range_evidence],
                tags=[PORTS_EXHAUSTED],
            )
        ]
    warn, crit = float(thresholds["warn_ratio"]), float(thresholds["crit_ratio"])
    confidence = 0.7 if range_note else 1.0
    usage = sockets.destination_usage(low, high, reserved)
    findings: list[Finding] = []
    busiest = 0
    for (local_ip, remote_ip, remote_port), states in usage.items():
        in_use = sum(states.values())
        busiest = max(busiest, in_use)
        ratio = in_use / usable
        if ratio <= warn:
            continue
        time_wait = states.get("TIME_WAIT", 0)
        destination = _endpoint(remote_ip, remote_port)
        labels = {"local_ip": local_ip, "remote_ip": remote_ip, "remote_port": str(remote_port)}
        findings.append(
            Finding(
                check=ID,
                severity=Severity.CRITICAL if ratio > crit else Severity.WARNING,
                summary=(
                    f"ephemeral ports toward {destination} from {local_ip}: {in_use} of {usable} in use"
                    f" ({ratio:.0%}), {time_wait} in TIME_WAIT; new connects there fail with EADDRNOTAVAIL"
                ),
                entity=Entity(EntityKind.DESTINATION, destination),
                confidence=confidence,
                magnitude=ratio / warn if warn > 0 else 1.0,
                evidence=[
                    Evidence(
                        "ephemeral_ports_in_use", in_use, labels, warn * usable, window_s=view.interval_s
                    ),
                    Evidence("ephemeral_ports_time_wait", time_wait, labels),
                    range_evidence,
                    *_connect_failures(view),
                ],
                tags=[PORTS_EXHAUSTED],
                fixes=[_ports_fix(view, low, high, time_wait / in_use, thresholds)],
            )
        )
    if findings:
        findings.sort(key=lambda f: -f.magnitude)
        return findings
    summary = (
        f"no destination near ephemeral port exhaustion: busiest uses {busiest} of {usable}"
        f" ({busiest / usable:.0%}, warn above {warn:.0%}) across {len(usage)} destinations"
    )
    if range_note:
        summary += f"; {range_note}"
    return [
        Finding.healthy(
            ID,
            summary,
            [Evidence("ephemeral_ports_busiest", busiest, threshold=warn * usable), range_evidence],
        )
    ]
