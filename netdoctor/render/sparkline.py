"""Sparklines and "started / peaked" cells for findings from a source with history.

The Prometheus source (`netdoctor.sources.prometheus.annotate_history`) sets each problem
finding's `started_at` / `peaked_at` and `history` (its key series over the lookback) and
appends the peak as an Evidence noted `PEAK_NOTE`. These helpers turn that into table
cells, so renderers need no knowledge of PromQL.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from netdoctor.model import Diagnosis, Finding, Status

BARS = "▁▂▃▄▅▆▇█"
PEAK_NOTE = "peak over"


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """`width` bars, each the maximum of its slice of `values` (peaks are never averaged away)."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return ""
    width = max(1, min(width, len(finite)))
    buckets = []
    for i in range(width):
        lo = i * len(finite) // width
        hi = max((i + 1) * len(finite) // width, lo + 1)
        buckets.append(max(finite[lo:hi]))
    low, high = min(buckets), max(buckets)
    if high == low:
        return BARS[0] * width if high == 0 else BARS[3] * width
    return "".join(BARS[min(int((v - low) / (high - low) * (len(BARS) - 1) + 0.5), len(BARS) - 1)] for v in buckets)


def clock(ts: float | None) -> str:
    """UTC time of day, with the date when not today: "03:12:30Z" or "05-01 03:12Z"."""
    if ts is None:
        return ""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    if time.strftime("%Y-%m-%d", time.gmtime(ts)) == today:
        return time.strftime("%H:%M:%SZ", time.gmtime(ts))
    return time.strftime("%m-%d %H:%MZ", time.gmtime(ts))


def trend_of(finding: Finding) -> str:
    """The sparkline of the finding's key series over the lookback, or "" without history."""
    return sparkline([value for _, value in finding.history])


def history_cells(finding: Finding) -> tuple[str, str, str]:
    """(started, peaked, sparkline) for one finding; empty strings when the source has no history."""
    return clock(finding.started_at), clock(finding.peaked_at), trend_of(finding)


def history_lines(diagnosis: Diagnosis) -> list[str]:
    """A small block for the table view: one line per problem with a known start or peak.

    Call it from a renderer and append the lines (empty list for live/capture sources).
    """
    from netdoctor.render.common import ranked

    lines = []
    for label, _depth, finding in ranked(diagnosis):
        if finding.status is not Status.PROBLEM or (finding.started_at is None and finding.peaked_at is None):
            continue
        started, peaked, spark = history_cells(finding)
        lines.append(
            f"  {label:<5} {finding.check:<15} started {started or '?':<14} peaked {peaked or '?':<14} {spark}"
        )
    if lines:
        lines.insert(0, "history (UTC, within the lookback):")
    return lines
