"""TCP sockets piling up in TIME_WAIT, CLOSE_WAIT or as orphans.

- TIME_WAIT: every actively closed connection waits 60 s; when their number reaches
  net.ipv4.tcp_max_tw_buckets the kernel destroys new ones at once (TCPTimeWaitOverflow,
  "time wait bucket table overflow"), and a TIME_WAIT build-up is what exhausts ephemeral
  ports toward one destination.
- CLOSE_WAIT: the peer closed, but the local application never called close(). The
  kernel never times these out, so a sizable count is an application bug, and the
  process holding them must be named. Owners come from the inventory's socket_owners
  (inode -> pid, comm), looked up for every CLOSE_WAIT socket (a dict lookup; grouping by
  local address:port first would split a client-side leak, whose local ports all differ,
  into groups of one). Sockets whose owner is unknown are grouped by local address:port.
- Orphans: closed sockets still sending (FIN_WAIT, LAST_ACK); above tcp_max_orphans the
  kernel resets them ("too many orphaned sockets"), and under memory pressure already
  at a quarter of it.

Thresholds (all overridable; no anchor alerts on these, netdoctor defaults):
- `warn_tw_ratio` = 0.70, `crit_tw_ratio` = 0.90 — TIME_WAIT (node_sockstat_TCP_tw) over
  tcp_max_tw_buckets. Any TCPTimeWaitOverflow increase is a warning on its own: the
  table already overflowed.
- `warn_closewait_total` = 100 — CLOSE_WAIT sockets on the host; `warn_closewait_process`
  = 50 — held by one process; `crit_closewait_process` = 1000 — close to the default
  RLIMIT_NOFILE soft limit of 1024, after which the process cannot open files or sockets.
- `warn_orphan_ratio` = 0.70, `crit_orphan_ratio` = 0.90 — orphans over tcp_max_orphans.
- `top_groups` = 5 — how many CLOSE_WAIT owners are named at most.

On Prometheus only the sockstat gauges exist: CLOSE_WAIT is not visible and the finding
says so; the TIME_WAIT and orphan limits are unknown there, so TIME_WAIT is judged by the
overflow counter when present (it is not in node_exporter's default netstat fields) and
a count with no limit and no overflow counter is reported as not judged, never healthy.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from netdoctor.checks._common import settings

from netdoctor.causes import CLOSEWAIT_BUILDUP, TIMEWAIT_BUILDUP
from netdoctor.model import Entity, EntityKind, Evidence, Finding, Severity
from netdoctor.view import View

ID = "socket_states"
TITLE = "TIME_WAIT / CLOSE_WAIT / orphan socket build-up"
TW = "node_sockstat_TCP_tw"
TW_OVERFLOW = "node_netstat_TcpExt_TCPTimeWaitOverflow"
ORPHAN = "node_sockstat_TCP_orphan"
NEEDS = [TW, TW_OVERFLOW, ORPHAN]
INVENTORY = ["sockets", "sysctls"]
THRESHOLDS: dict[str, Any] = {
    "warn_tw_ratio": 0.70,
    "crit_tw_ratio": 0.90,
    "warn_closewait_total": 100,
    "warn_closewait_process": 50,
    "crit_closewait_process": 1000,
    "warn_orphan_ratio": 0.70,
    "crit_orphan_ratio": 0.90,
    "top_groups": 5,
}


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value >= 0 else None


def _gauge(view: View, metric: str) -> float | None:
    if not view.has(metric):
        return None
    return _finite(max((p.value for p in view.peak(metric)), default=None))


def _why(view: View, metric: str) -> str:
    return view.why_missing(metric) or f"{metric} is not a usable number"


def _sysctl(view: View, name: str) -> int | None:
    value = view.inventory.sysctl_int(name) if view.inventory else None
    return value if value is not None and value > 0 else None


def _fill(
    view: View, value: float, limit: int | None, metric: str, warn: float, crit: float
) -> tuple[Severity, float, Evidence]:
    """Severity and magnitude of a gauge held against a sysctl limit (OK when the limit is unknown)."""
    evidence = Evidence(metric, value, threshold=warn * limit if limit else None, window_s=view.interval_s)
    if not limit:
        return Severity.OK, 0.0, evidence
    ratio = value / limit
    severity = Severity.CRITICAL if ratio > crit else Severity.WARNING if ratio > warn else Severity.OK
    return severity, ratio / warn if warn > 0 else 1.0, evidence


def _time_wait(view: View, t: Mapping[str, Any], judged: list[str], gaps: list[str]) -> list[Finding]:
    count = _gauge(view, TW)
    sockets = view.inventory.sockets if view.inventory else None
    if count is None and sockets is not None:
        count = float(sum(1 for _ in sockets.in_state("TIME_WAIT", "tcp")))
    overflow = _finite(view.rate_sum(TW_OVERFLOW)) if view.has(TW_OVERFLOW) else None
    limit = _sysctl(view, "net.ipv4.tcp_max_tw_buckets")
    if count is None and overflow is None:
        gaps.append(f"TIME_WAIT: {_why(view, TW)}")
        return []
    evidence = []
    severity, magnitude = Severity.OK, 0.0
    if count is not None:
        severity, magnitude, ev = _fill(
            view, count, limit, TW, float(t["warn_tw_ratio"]), float(t["crit_tw_ratio"])
        )
        evidence.append(ev)
    if overflow is not None:
        evidence.append(Evidence(TW_OVERFLOW, overflow, threshold=0.0, unit="/s", window_s=view.interval_s))
        if overflow > 0:
            severity, magnitude = max(severity, Severity.WARNING), max(magnitude, 1.0)
    else:
        gaps.append(f"TIME_WAIT overflow: {_why(view, TW_OVERFLOW)}")
    text = f"TIME_WAIT {count:.0f}" if count is not None else "TIME_WAIT count unknown"
    text += f" of {limit} buckets" if limit else ""
    text += f", overflow {overflow:.2f}/s" if overflow is not None else ""
    if limit is None and overflow is None:  # a count with nothing to hold it against judges nothing
        gaps.append(f"{text}: tcp_max_tw_buckets not known on this source")
        return []
    if limit is None:
        gaps.append("TIME_WAIT against tcp_max_tw_buckets: limit not known on this source")
    if severity is Severity.OK:
        judged.append(text)
        return []
    summary = f"{text}: TIME_WAIT is building up"
    return [Finding(ID, severity, summary, magnitude=magnitude, evidence=evidence, tags=[TIMEWAIT_BUILDUP])]


def _close_wait(view: View, t: Mapping[str, Any], judged: list[str], gaps: list[str]) -> list[Finding]:
    sockets = view.inventory.sockets if view.inventory else None
    if sockets is None:
        why = view.inventory.missing.get("sockets", "socket table not read") if view.inventory else ""
        gaps.append(f"CLOSE_WAIT: {why or 'not visible from node_exporter (no socket inventory)'}")
        return []
    owners = view.inventory.socket_owners if view.inventory else {}
    groups: Counter[str] = Counter()
    endpoints: dict[str, Counter[str]] = {}
    for sock in sockets.in_state("CLOSE_WAIT", "tcp"):
        owner = owners.get(sock.inode)
        key = f"{owner[1]} (pid {owner[0]})" if owner else f"?{_endpoint(sock.local_ip, sock.local_port)}"
        groups[key] += 1
        endpoints.setdefault(key, Counter())[_endpoint(sock.remote_ip, sock.remote_port)] += 1
    total = sum(groups.values())
    per_process, crit = int(t["warn_closewait_process"]), int(t["crit_closewait_process"])
    top = groups.most_common(int(t["top_groups"]))
    named = [(k, n) for k, n in top if n >= per_process]
    if not named and total >= int(t["warn_closewait_total"]) and top:
        named = top[:1]  # spread thin, but sizable: name the biggest holder
    findings = []
    for key, count in named:
        known = not key.startswith("?")
        entity = Entity(EntityKind.PROCESS, key) if known else Entity(EntityKind.SOCKET, key[1:])
        who = key if known else f"the owner of {key[1:]} (unknown: not resolved by the inventory)"
        peers = ", ".join(f"{peer} ({n})" for peer, n in endpoints[key].most_common(3))
        findings.append(
            Finding(
                ID,
                Severity.CRITICAL if count >= crit else Severity.WARNING,
                f"{count} CLOSE_WAIT sockets held by {who} (host total {total}): the peer closed but the"
                f" application never called close(); peers {peers}",
                entity=entity,
                magnitude=count / per_process if per_process > 0 else 1.0,
                evidence=[
                    Evidence("close_wait_sockets", count, {"owner": key}, float(per_process)),
                    Evidence("close_wait_sockets_total", total, threshold=float(t["warn_closewait_total"])),
                ],
                tags=[CLOSEWAIT_BUILDUP],
            )
        )
    if not findings:
        judged.append(
            f"CLOSE_WAIT {total}" + (f" (most: {top[0][0].lstrip('?')} {top[0][1]})" if top else "")
        )
    return findings


def _orphans(view: View, t: Mapping[str, Any], judged: list[str], gaps: list[str]) -> list[Finding]:
    count = _gauge(view, ORPHAN)
    if count is None:
        gaps.append(f"orphans: {_why(view, ORPHAN)}")
        return []
    limit = _sysctl(view, "net.ipv4.tcp_max_orphans")
    warn, crit = float(t["warn_orphan_ratio"]), float(t["crit_orphan_ratio"])
    severity, magnitude, evidence = _fill(view, count, limit, ORPHAN, warn, crit)
    if limit is None:
        gaps.append(f"orphans {count:.0f}: tcp_max_orphans not known")
        return []
    text = f"orphans {count:.0f} of {limit}"
    if severity is Severity.OK:
        judged.append(text)
        return []
    summary = f"{text}: the kernel resets orphans past the limit"
    return [Finding(ID, severity, summary, magnitude=magnitude, evidence=[evidence])]


def run(view: View, thresholds: Mapping[str, Any]) -> list[Finding]:
    thresholds = settings(THRESHOLDS, thresholds)
    judged: list[str] = []
    gaps: list[str] = []
    findings = [
        *_time_wait(view, thresholds, judged, gaps),
        *_close_wait(view, thresholds, judged, gaps),
        *_orphans(view, thresholds, judged, gaps),
    ]
    if findings:
        return findings
    if not judged:
        return [Finding.cannot_judge(ID, "; ".join(gaps))]
    summary = "no socket state build-up: " + ", ".join(judged)
    if gaps:
        summary += "; not judged: " + "; ".join(gaps)
    evidence = [Evidence(m, v) for m in (TW, ORPHAN) if (v := _gauge(view, m)) is not None]
    return [Finding.healthy(ID, summary, evidence)]
