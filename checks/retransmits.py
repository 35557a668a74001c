"""Is TCP retransmitting a large share of what it sends?

The ratio `rate(Tcp_RetransSegs) / rate(Tcp_OutSegs)` means the same on a quiet and a
busy host, unlike the seed's fixed `rate(RetransSegs) > 50`. Retransmits are a symptom
(of conntrack drops, softnet drops, NIC drops, a full link or a lossy path); the engine
nests this finding under whichever cause it finds.

Thresholds (all overridable):
- `warn_ratio` = 0.01 and `crit_ratio` = 0.05: more than 1% / 5% of sent segments are
  retransmits (THRESHOLDS.md: no anchor alerts on retransmits; these are netdoctor's
  defaults — 1% already costs a Reno/CUBIC flow much of its throughput).
- `min_stall_retrans` = 20: below the traffic guard, at least this many retransmits in the window with RTO
  timeouts rising and no more new segments than retransmits is a stall (a path dropping everything), a
  warning; without it, a dead path would read "too little traffic".
- `min_out_segs` = 1000: the ratio is judged only when at least 1000 segments were sent
  in the window (100/s over the live 10 s window; about 3/s over a 5 min Prometheus
  window). Below that one lost packet makes a percentage: with 1000 segments a 1% ratio
  is 10 retransmits, not a single unlucky loss. Below the guard (or with no traffic at
  all) the finding is healthy with confidence 0.5 and says the traffic was too small.

Evidence beside the ratio: RTO timeouts (`TcpExt_TCPTimeouts`, a retransmit that waited
a whole RTO: the worst kind) and SYN retransmits (`TcpExt_TCPSynRetrans`: connections
that could not even be set up), when the source has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netdoctor.checks._common import evidence, magnitude, pct, per_s, seconds, settings, severity_for, total

from netdoctor.causes import TCP_RETRANSMITS
from netdoctor.model import Evidence, Finding, Severity
from netdoctor.view import View

ID = "retransmits"
TITLE = "TCP retransmit ratio"
RETRANS = "node_netstat_Tcp_RetransSegs"
OUT = "node_netstat_Tcp_OutSegs"
TIMEOUTS = "node_netstat_TcpExt_TCPTimeouts"
SYN_RETRANS = "node_netstat_TcpExt_TCPSynRetrans"
NEEDS = [RETRANS, OUT, TIMEOUTS, SYN_RETRANS]
THRESHOLDS: dict[str, Any] = {
    "warn_ratio": 0.01,
    "crit_ratio": 0.05,
    "min_out_segs": 1000,
    "min_stall_retrans": 20,
}


def _side_evidence(view: View) -> list[Evidence]:
    """RTO timeouts and SYN retransmits, when exposed (optional: never required)."""
    out = []
    for metric, note in ((TIMEOUTS, "RTO timeouts"), (SYN_RETRANS, "SYN retransmits")):
        rate = total(view.rate(metric)) if view.has(metric) else None
        if rate is not None:
            out.append(evidence(view, metric, rate, unit="/s", note=note))
    return out


def _stalled(
    view: View, retrans: float, out: float, min_retrans: float, base: list[Evidence]
) -> Finding | None:
    """Too little traffic for a ratio, yet retransmitting with RTOs firing: connections stalled, not idle.

    A path that drops everything sends almost nothing new (cwnd collapses), so the volume guard alone
    would call it healthy.
    """
    timeouts = total(view.rate(TIMEOUTS)) if view.has(TIMEOUTS) else None
    interval = view.interval_s or 0.0
    if retrans * interval < min_retrans or not timeouts or retrans < out:
        return None
    return Finding(
        check=ID,
        severity=Severity.WARNING,
        summary=(
            f"TCP is retransmitting ({per_s(retrans)}, RTO timeouts {per_s(timeouts)}) while sending almost "
            f"nothing new ({per_s(out)}): connections are stalled on a path that drops their packets"
        ),
        confidence=0.8,
        magnitude=magnitude(retrans * interval, min_retrans),
        evidence=[*base, evidence(view, TIMEOUTS, timeouts, unit="/s", note="RTO timeouts")],
        tags=[TCP_RETRANSMITS],
    )


def run(view: View, thresholds: Mapping[str, Any]) -> list[Finding]:
    limits = settings(THRESHOLDS, thresholds)
    warn, crit = float(limits["warn_ratio"]), float(limits["crit_ratio"])
    min_out = float(limits["min_out_segs"])

    why = view.missing(RETRANS, OUT)
    if why:
        return [Finding.cannot_judge(ID, why)]
    retrans, out = total(view.rate(RETRANS)), total(view.rate(OUT))
    if retrans is None or out is None or not view.interval_s:
        return [Finding.cannot_judge(ID, "no usable TCP segment rate over the window (too few samples)")]

    sent_in_window = out * view.interval_s
    base = [
        evidence(view, OUT, out, unit="/s", note="segments sent"),
        evidence(view, RETRANS, retrans, unit="/s", note="segments retransmitted"),
    ]
    if sent_in_window < min_out:
        stalled = _stalled(view, retrans, out, float(limits["min_stall_retrans"]), base)
        if stalled is not None:
            return [stalled]
        finding = Finding.healthy(
            ID,
            f"too little TCP traffic to judge a retransmit ratio: {sent_in_window:.0f} segments sent "
            f"in {seconds(view.interval_s)} (< {min_out:.0f}), {retrans * view.interval_s:.0f} retransmitted",
            base,
        )
        finding.confidence = 0.5
        return [finding]

    ratio = retrans / out
    ratio_evidence = evidence(
        view, "tcp_retransmit_ratio", ratio, threshold=warn, note="RetransSegs / OutSegs"
    )
    side = _side_evidence(view)
    severity = severity_for(ratio, warn, crit)
    if severity is None:
        return [
            Finding.healthy(
                ID,
                f"TCP retransmit ratio {pct(ratio)} (threshold {pct(warn)}) over {per_s(out)} segments sent",
                [ratio_evidence, *base, *side],
            )
        ]
    details = ", ".join(f"{e.note} {per_s(e.value)}" for e in side)
    return [
        Finding(
            check=ID,
            severity=severity,
            summary=(
                f"TCP retransmits {pct(ratio)} of sent segments ({per_s(retrans)} of {per_s(out)}; "
                f"threshold {pct(warn)})" + (f"; {details}" if details else "")
            ),
            magnitude=magnitude(ratio, warn),
            evidence=[ratio_evidence, *base, *side],
            tags=[TCP_RETRANSMITS],
        )
    ]
